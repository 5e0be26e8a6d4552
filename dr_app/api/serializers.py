"""Serializers of dr_app's API."""
