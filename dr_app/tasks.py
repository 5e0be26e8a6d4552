"""Celery tasks of dr_app: claim a Job, call one service."""
