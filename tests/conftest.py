"""Shared fixtures: personas, API clients, a real Celery worker."""
import pytest
from rest_framework.test import APIClient

from tests.factories import user_in_role


@pytest.fixture
def admin(db):
    return user_in_role("alice-admin", "admin")


@pytest.fixture
def approver(db):
    return user_in_role("bob-approver", "approver")


@pytest.fixture
def auditor(db):
    return user_in_role("carol-auditor", "auditor")


@pytest.fixture
def outsider(db):
    return user_in_role("dave-outsider", None)


@pytest.fixture
def personas(admin, approver, auditor, outsider):
    return {"admin": admin, "approver": approver, "auditor": auditor, "outsider": outsider}


@pytest.fixture
def api_client():
    """An API client; call .force_authenticate(user) or send a token."""
    return APIClient()


@pytest.fixture
def api_as(api_client):
    def _as(user):
        api_client.force_authenticate(user)
        return api_client
    return _as


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker on the test broker (Redis), in threads of this process."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker
