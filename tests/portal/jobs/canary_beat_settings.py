"""Test settings for a beat process whose schedule carries secrets (see test_worker_logging)."""
from portal.settings.test import *  # noqa: F401,F403
from tests.portal.jobs.canaries import CANARIES

# Beat lists its schedule, with each entry's arguments, when it starts (at DEBUG). An hour's
# interval: the entry is never due while the test runs, so nothing is queued.
CELERY_BEAT_SCHEDULE = {"canary": {"task": "tests.canary.never_registered", "schedule": 3600,
                                   "args": list(CANARIES)}}
