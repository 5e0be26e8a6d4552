"""Pages: HSM Backups tab, restore wizard, DR drills."""
