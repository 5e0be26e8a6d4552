"""Reads for backup catalog, schedules and DR drills."""
