"""A Job driven by a real Celery worker (Redis broker) reports progress to completion."""

import pytest

from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.support.waiting import wait_for


@pytest.mark.django_db(transaction=True)
def test_selfcheck_job_runs_on_a_real_worker_to_completion(celery_worker, api_as, admin):
    client = api_as(admin)
    response = client.post("/api/v1/jobs/")
    assert response.status_code == 202
    job_id = response.json()["id"]

    job = wait_for(lambda: Job.objects.filter(pk=job_id, status__in=Job.FINISHED).first(), timeout=30,
                   interval=0.05)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 100
    assert job.result["checks"] == {"database": "ok", "broker": "ok"}
    assert [line["text"] for line in job.log] == ["database: ok", "broker: ok"]
    detail = client.get(f"/api/v1/jobs/{job_id}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 100
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", "outcome"))
    assert actions == [("job.request", "recorded"), ("job.start", "recorded"),
                       ("job.finish", "succeeded")]


@pytest.mark.django_db(transaction=True)
def test_a_job_is_claimed_once_even_if_delivered_twice():
    from portal.jobs.services import job_claim

    job = Job.objects.create(kind="system.selfcheck", actor_name="system")
    assert job_claim(job_id=job.pk, token="task-1")
    assert job_claim(job_id=job.pk, token="task-1")  # a retry of the same task
    assert not job_claim(job_id=job.pk, token="task-2")  # a second delivery


def test_progress_partial_polls_until_finished(client, admin, db):
    job = Job.objects.create(kind="system.selfcheck", actor_name="system",
                             status=Job.Status.RUNNING, progress=40, step="Checked database")
    client.force_login(admin)
    partial = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert b'hx-trigger="every 1s"' in partial.content
    assert b'value="40"' in partial.content
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, progress=100)
    partial = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert b"hx-trigger" not in partial.content


@pytest.fixture
def broker_down():
    """Point the app at a port nothing listens on: the broker is really unreachable."""
    from portal.celery import app

    original = app.conf.broker_url, app.conf.broker_connection_max_retries
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app.conf.broker_connection_max_retries = 0
    _forget_connections(app)  # pools keep the URL they were built with
    yield
    app.conf.broker_url, app.conf.broker_connection_max_retries = original
    _forget_connections(app)


def _forget_connections(app) -> None:
    app._pool = None
    app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_a_job_that_cannot_be_queued_fails_visibly(api_as, admin, broker_down):
    response = api_as(admin).post("/api/v1/jobs/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "queue_unavailable"
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED and "queue" in job.error
    assert AuditEvent.objects.filter(action="job.finish", outcome="failed").exists()
