"""The Data Flow API: signed requests, the retry policy, the deadline watchdog and reconciliation."""

from __future__ import annotations
