"""Real parts for the plugin's own tests: HTTP backends, a real HAProxy, bounded load."""
