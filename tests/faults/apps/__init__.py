"""Worker apps of the fault campaign, run by ``pulse-worker``."""
