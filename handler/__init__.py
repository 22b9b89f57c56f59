"""Event-driven launcher for NAVER Cloud Data Flow job executions."""

from __future__ import annotations

__version__ = "0.1.0"
