"""mhsm-portal: a self-service portal for Azure Managed HSM inside the private network."""
from portal.celery import app as celery_app

__all__ = ("celery_app",)
