"""What is written down and sent: the history and the records that outlive a run, each
outcome recorded once, the notifications."""
