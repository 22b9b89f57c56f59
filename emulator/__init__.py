"""Local NCP Data Flow emulator for the demo and the tests; never deployed."""
