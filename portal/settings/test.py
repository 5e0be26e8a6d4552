"""Test settings: the base settings against PostgreSQL and Redis, with a fast hasher."""
from portal.settings.base import *  # noqa: F401,F403
from portal.settings.base import STORAGES
from portal.settings.env import env_str

import dj_database_url

DATABASES = {"default": dj_database_url.parse(
    env_str("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal"))}
# The test flush TRUNCATEs every table; the audit tables' trigger lets only their owner do
# that, and only with this session setting (see portal/audit/migrations/0003).
DATABASES["default"]["OPTIONS"] = {"options": "-c portal.audit_truncate=allow"}
DATABASE_OWNER_URL = ""
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = env_str("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
STORAGES = {**STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Tests sign in with local accounts (tests/factories.py) as well as through the emulator's
# authority; production keeps break-glass off unless PORTAL_BREAK_GLASS is set.
PORTAL_BREAK_GLASS = True
