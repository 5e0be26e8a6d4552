"""Backups, restores, schedules, retention and DR drills (writes; every action audited)."""
