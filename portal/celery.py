"""The Celery application: CELERY_-prefixed Django settings, tasks autodiscovered per app.

Worker and beat log through Django's LOGGING, the same configuration as the web process,
so every handler redacts (portal.audit.redaction): connecting `setup_logging` stops Celery
from replacing the root handler with its own unfiltered one. Levels come from
PORTAL_LOG_LEVEL, not from `--loglevel`.
"""
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_portal_logging(**kwargs) -> None:
    """Apply settings.LOGGING in worker and beat instead of Celery's own handlers."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


@signals.celeryd_after_setup.connect
@signals.beat_init.connect
def redirect_prints_to_logging(**kwargs) -> None:
    """Celery sends stray prints to logging only when it owns logging: do it here too."""
    if app.conf.worker_redirect_stdouts:
        app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)
