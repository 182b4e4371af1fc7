"""HAProxy: its Runtime API client, several instances seen as one, its configuration read
as HAProxy reads it."""
