"""REST API of dr_app."""
