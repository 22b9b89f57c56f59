"""The Data Flow API: signed requests, the retry policy, the deadline watchdog and reconciliation."""
