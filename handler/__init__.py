"""Event-driven launcher for NAVER Cloud Data Flow job executions."""

__version__ = "0.1.0"
