"""Celery tasks of local RBAC: thin wrappers around one service each."""
from celery import shared_task


@shared_task
def access_housekeeping() -> dict:
    """Beat (every ACCESS_BEAT_SECONDS): remove expired grants, close ended reviews."""
    from access_app import services

    return services.access_housekeeping()


@shared_task
def rbac_sync_all() -> None:
    """Beat: read every HSM's role definitions and assignments; flag drift."""
    from access_app import services

    services.rbac_sync_all()
