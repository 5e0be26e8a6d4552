"""Maker-checker rules: never your own request (every registered operation, every door),
hash binding, expiry, policies, cancelling, the inbox and its count, email, audit chain."""
import inspect
import time
import uuid

import pytest
from django.contrib.admin import AdminSite
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, transaction
from django.test import RequestFactory
from django.utils import timezone

from portal.accounts.identity import identity_link, principal_id
from portal.approvals import registry
from portal.approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest
from portal.approvals.selectors import approval_inbox_count, approval_trail
from portal.approvals.services import (ApprovalRefused, approval_cancel, approval_decide,
                                       approval_expire_due, approval_require)
from portal.audit.models import AuditEvent
from tests.factories import user_in_role
from tests.portal.approvals.conftest import runs, test_operation
from tests.support.approvals import run_job


def _request_for(operation: str, actor, **payload) -> ApprovalRequest:
    return approval_require(operation=operation, actor=actor,
                            payload=payload or {"probe": uuid.uuid4().hex},
                            target=f"test:{operation}", request_id="r-test")


def _alias_of(user, username: str, role: str = "approver"):
    """Another account (a different username, another role) of the same directory principal."""
    object_id = str(uuid.uuid4())
    identity_link(user=user, object_id=object_id, tenant_id=str(uuid.uuid4()))
    alias = user_in_role(username, role)
    identity_link(user=alias, object_id=object_id.upper(), tenant_id=str(uuid.uuid4()))
    return alias


# Never your own request ---------------------------------------------------------------------

def test_every_registered_operation_takes_an_approval_and_has_a_label():
    """The execution job calls service(actor=, approval=, request_id=, **payload): every
    registered service must accept `approval` (or it could only ever act unapproved)."""
    assert {"key.delete", "key.purge", "key.rotation_policy.clear"} <= {
        op.name for op in registry.operations()}
    for op in registry.operations():
        params = inspect.signature(op.service).parameters
        assert "approval" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()), \
            op.name
        assert op.label, op.name


def test_the_requester_cannot_decide_through_any_door_for_any_operation(client, api_as, admin,
                                                                        approver):
    """Every registered operation (new ones are covered automatically), and every door: the
    page, the API, the Django admin, the management command, and an alias account of the
    same directory principal. 0 bypass paths: no decision row is ever written."""
    alias = _alias_of(admin, "alice-alias")  # an approver account, same object id as admin
    from portal.approvals.admin import register_on

    site = AdminSite(name="approvals-test")
    register_on(site)  # the portal does not install the admin; were it installed, this
    factory = RequestFactory()
    superuser_request = factory.post("/admin/")
    superuser_request.user = admin
    admin.is_superuser = True  # the admin's strongest form: still no door
    operations = [op.name for op in registry.operations()]
    assert len(operations) >= 4
    # An API token of the alias account: another door, another credential, one principal.
    import io

    from rest_framework.test import APIClient

    out = io.StringIO()
    call_command("drf_create_token", alias.username, stdout=out)
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().split()[2]}")
    for operation in operations:
        req = _request_for(operation, admin)
        # The page.
        client.force_login(admin)
        for decision in ("approve", "deny"):
            page = client.post(f"/approvals/{req.pk}/decide/", {"decision": decision},
                               follow=True)
            assert "You made this request" in page.content.decode(), operation
        # The API (session or token, one principal).
        api = api_as(admin)
        for decision in ("approve", "deny"):
            answer = api.post(f"/api/v1/approvals/{req.pk}/{decision}/", {}, format="json")
            assert answer.status_code == 403, (operation, answer.content)
            assert answer.json()["error"]["code"] == "self_approval_refused"
        # The alias: another username and role, the same principal.
        alias_answer = api_as(alias).post(f"/api/v1/approvals/{req.pk}/approve/", {},
                                          format="json")
        assert alias_answer.status_code == 403, operation
        by_token = token_client.post(f"/api/v1/approvals/{req.pk}/approve/", {}, format="json")
        assert by_token.status_code == 403, (operation, by_token.content)
        assert by_token.json()["error"]["code"] == "self_approval_refused"
        # The management command, under either username.
        for username in (admin.username, alias.username):
            with pytest.raises(CommandError, match="You made this request"):
                call_command("approval_decide", str(req.pk), "approve", "--as", username)
        # The Django admin: read-only for everyone, the superuser included.
        for model in (ApprovalRequest, ApprovalDecision, ApprovalPolicy):
            model_admin = site._registry[model]
            assert model_admin.get_actions(superuser_request) == {}
            assert not model_admin.has_add_permission(superuser_request)
            assert not model_admin.has_change_permission(superuser_request, req)
            assert not model_admin.has_delete_permission(superuser_request, req)
        with pytest.raises(PermissionError):
            site._registry[ApprovalRequest].save_model(superuser_request, req, None, True)
        # Below every door: the database refuses the requester's decision row.
        with pytest.raises((IntegrityError, DatabaseError), match="cannot decide their own"):
            with transaction.atomic():
                ApprovalDecision.objects.create(
                    request=req, approver=alias, approver_principal=principal_id(alias),
                    approver_name=alias.username, decision="approve",
                    payload_hash=req.payload_hash)
        req.refresh_from_db()
        assert req.status == "pending" and not req.decisions.exists(), operation
        assert approval_inbox_count(admin) == approval_inbox_count(alias) == 0
        # Someone else may decide it.
        assert approval_inbox_count(approver) == 1
        approval_decide(approval_id=req.pk, actor=approver, decision="deny", comment="no")
    refused = AuditEvent.objects.filter(outcome="denied", detail__reason="self_approval")
    # Per operation: 2 page + 2 API + 1 alias + 1 token + 2 command refusals, each audited.
    assert refused.count() == 8 * len(operations)
    assert {e.detail["door"] for e in refused} == {"ui", "api", "command"}


def test_decisions_are_never_changed_or_deleted(admin, approver):
    req = test_operation(actor=admin, request_id="r", note="immutable")
    approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    decision = ApprovalDecision.objects.get(request=req)
    with pytest.raises(DatabaseError, match="cannot be changed"):
        with transaction.atomic():
            ApprovalDecision.objects.filter(pk=decision.pk).update(decision="deny")
    with pytest.raises(DatabaseError, match="cannot be changed"):
        with transaction.atomic():
            ApprovalDecision.objects.filter(pk=decision.pk).delete()


def test_only_approvers_and_admins_decide_and_auditors_read(api_as, admin, approver, auditor,
                                                            outsider):
    req = test_operation(actor=admin, request_id="r", note="roles")
    refused = api_as(auditor).post(f"/api/v1/approvals/{req.pk}/approve/", {}, format="json")
    assert refused.status_code == 403
    assert api_as(auditor).get(f"/api/v1/approvals/{req.pk}/").status_code == 200
    assert api_as(auditor).get("/api/v1/approvals/").json()["count"] == 1
    assert api_as(outsider).get("/api/v1/approvals/").status_code == 403
    with pytest.raises(CommandError, match="Only approvers and administrators"):
        call_command("approval_decide", str(req.pk), "approve", "--as", auditor.username)
    second_admin = user_in_role("zed-admin", "admin")
    done = api_as(second_admin).post(f"/api/v1/approvals/{req.pk}/approve/",
                                     {"comment": "fine"}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "approved"
    assert done.json()["decisions"][0]["comment"] == "fine"
    again = api_as(approver).post(f"/api/v1/approvals/{req.pk}/approve/", {}, format="json")
    assert again.status_code == 409 and "already approved" in again.json()["error"]["message"]


# An approval binds to the exact request -----------------------------------------------------

def test_a_payload_changed_after_approval_is_refused_and_the_request_void(admin, approver):
    req = test_operation(actor=admin, request_id="r", note="original")
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    # Someone edits the stored payload (an ORM shell, SQL): the database voids the request.
    ApprovalRequest.objects.filter(pk=req.pk).update(payload={"note": "changed"})
    run_job(req)
    req.refresh_from_db()
    assert req.status == "void" and runs(req.pk) == 0
    assert "changed after it was approved" in req.failure_reason


def test_editing_the_payload_and_its_hash_together_still_voids_it(admin, approver):
    from portal.approvals.models import payload_hash

    req = test_operation(actor=admin, request_id="r", note="original")
    ApprovalRequest.objects.filter(pk=req.pk).update(
        payload={"note": "evil"}, payload_hash=payload_hash("test.record", {"note": "evil"}))
    req.refresh_from_db()
    assert req.status == "void"
    with pytest.raises(Exception, match="already void"):
        approval_decide(approval_id=req.pk, actor=approver, decision="approve")


def test_an_approval_runs_only_the_exact_payload_it_was_given_for(admin, approver):
    req = test_operation(actor=admin, request_id="r", note="one")
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    # The same approval presented for another payload (a service called with other args).
    with pytest.raises(ApprovalRefused, match="changed after it was approved"):
        test_operation(actor=admin, request_id="r2", note="two", approval=req)
    req.refresh_from_db()
    assert req.status == "void" and runs(req.pk) == 0


def test_an_approval_serves_only_its_requester_and_only_once(admin, approver):
    req = test_operation(actor=admin, request_id="r", note="once")
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    with pytest.raises(ApprovalRefused, match="another person's request"):
        test_operation(actor=approver, request_id="r2", note="once", approval=req)
    run_job(req)
    req.refresh_from_db()
    assert req.status == "executed" and runs(req.pk) == 1
    with pytest.raises(ApprovalRefused, match="already run"):
        test_operation(actor=admin, request_id="r3", note="once", approval=req)
    assert runs(req.pk) == 1


# Expiry -------------------------------------------------------------------------------------

def _move_clock(monkeypatch, hours: float):
    later = timezone.now() + timezone.timedelta(hours=hours)
    monkeypatch.setattr(timezone, "now", lambda: later)


def test_an_expired_approval_cannot_execute(admin, approver, monkeypatch):
    req = test_operation(actor=admin, request_id="r", note="late")
    assert abs((req.expires - req.created).total_seconds() - 24 * 3600) < 1  # 24 h default
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    _move_clock(monkeypatch, 24.01)  # the job runs after the approval's lifetime
    run_job(req)
    req.refresh_from_db()
    assert req.status == "expired" and runs(req.pk) == 0
    assert "expired" in req.failure_reason
    assert AuditEvent.objects.filter(action="approval.execute", outcome="denied",
                                     detail__reason="expired").exists()


def test_an_expired_request_cannot_be_decided_and_the_sweep_marks_it(admin, approver,
                                                                     monkeypatch):
    req = test_operation(actor=admin, request_id="r", note="stale")
    other = test_operation(actor=admin, request_id="r", note="stale-2")
    _move_clock(monkeypatch, 25)
    assert approval_inbox_count(approver) == 0
    with pytest.raises(Exception, match="expired"):
        approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    assert approval_expire_due() == 1  # the other one; the first was marked when refused
    other.refresh_from_db()
    assert other.status == "expired"


def test_the_lifetime_is_a_policy_setting(admin):
    ApprovalPolicy.objects.all().delete()
    ApprovalPolicy.objects.create(name="short", lifetime_hours=2, required_approvers=1)
    req = test_operation(actor=admin, request_id="r", note="short")
    assert abs((req.expires - req.created).total_seconds() - 2 * 3600) < 1


# Policies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("role, scope, needed", [
    ("Managed HSM Administrator", "/", 2), ("Managed HSM Policy Administrator", "/", 2),
    ("Crypto Officer", "/", 2), ("Managed HSM Crypto Officer", "/keys", 1),
    ("Managed HSM Crypto User", "/", 1), ("Managed HSM Crypto User", "/keys/k1", 1)])
def test_the_seeded_policies(admin, role, scope, needed):
    import importlib

    from django.apps import apps

    seeding = importlib.import_module(
        "portal.approvals.migrations.0002_default_policies_and_void_trigger")
    seeding.seed(apps, None)  # what the data migration does (a flushed test DB lost it)
    assert ApprovalPolicy.objects.count() == 4
    req = approval_require(operation="test.record", actor=admin, payload={"note": "p"},
                           target="t", request_id="r", context={"role": role, "scope": scope})
    assert req.required_approvals == needed


def test_two_approvers_are_needed_and_must_be_distinct_principals(admin, approver, approver2):
    req = approval_require(operation="test.record", actor=admin, payload={"note": "two"},
                           target="t", request_id="r",
                           context={"role": "Managed HSM Administrator", "scope": "/"})
    assert req.required_approvals == 2
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    assert req.status == "pending" and req.job is None
    # The same approver again, or an alias of theirs, does not count twice.
    alias = _alias_of(approver, "bob-alias")
    with pytest.raises(Exception, match="already decided"):
        approval_decide(approval_id=req.pk, actor=alias, decision="approve")
    req = approval_decide(approval_id=req.pk, actor=approver2, decision="approve")
    assert req.status == "approved" and req.job is not None
    assert req.job.kind == "approval.execute"


def test_one_deny_ends_the_request(admin, approver):
    req = test_operation(actor=admin, request_id="r", note="deny")
    req = approval_decide(approval_id=req.pk, actor=approver, decision="deny", comment="no")
    assert req.status == "denied" and req.job is None
    with pytest.raises(ApprovalRefused, match="denied, not approved"):
        test_operation(actor=admin, request_id="r", note="deny", approval=req)


def test_the_requester_cancels_a_pending_request(api_as, admin, approver):
    req = test_operation(actor=admin, request_id="r", note="cancel")
    assert api_as(approver).post(f"/api/v1/approvals/{req.pk}/cancel/").status_code == 403
    cancelled = api_as(admin).post(f"/api/v1/approvals/{req.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    with pytest.raises(Exception, match="already cancelled"):
        approval_cancel(approval_id=req.pk, actor=admin)
    assert approval_inbox_count(approver) == 0


def test_bounds_and_bad_ids_are_sentences(api_as, admin, approver):
    from portal.errors import BadInput

    with pytest.raises(BadInput, match="justification is too long"):
        approval_require(operation="test.record", actor=admin, payload={"note": "x"},
                         target="t", request_id="r", justification="x" * 2001)
    with pytest.raises(TypeError):
        approval_require(operation="test.record", actor=admin, payload={"user": admin},
                         target="t", request_id="r")
    with pytest.raises(ValueError, match="secrets"):
        approval_require(operation="test.record", actor=admin,
                         payload={"client_secret": "s3cr3t"}, target="t", request_id="r")
    api = api_as(approver)
    assert api.get("/api/v1/approvals/999999/").status_code == 404
    assert api.post("/api/v1/approvals/999999/approve/", {}, format="json").status_code == 404
    req = test_operation(actor=admin, request_id="r", note="bounds")
    long = api.post(f"/api/v1/approvals/{req.pk}/approve/", {"comment": "x" * 2001},
                    format="json")
    assert long.status_code == 400 and "comment" in long.json()["error"]["fields"]
    assert api.get("/api/v1/approvals/?box=nope").status_code == 400
    assert api.get("/api/v1/approvals/?box=all&status=nope").status_code == 400


# Inbox, email, audit ------------------------------------------------------------------------

def test_inbox_lists_what_waits_for_me_and_the_count_is_one_query(api_as, admin, approver,
                                                                   approver2,
                                                                   django_assert_num_queries):
    mine = test_operation(actor=approver, request_id="r", note="by-approver")
    theirs = [test_operation(actor=admin, request_id="r", note=f"n{i}") for i in range(3)]
    approval_decide(approval_id=theirs[0].pk, actor=approver2, decision="deny")
    inbox = api_as(approver).get("/api/v1/approvals/").json()
    assert sorted(r["id"] for r in inbox["results"]) == [theirs[1].pk, theirs[2].pk]
    assert mine.pk not in [r["id"] for r in inbox["results"]]
    assert [r["id"] for r in api_as(approver).get("/api/v1/approvals/?box=mine").json()[
        "results"]] == [mine.pk]
    approver.refresh_from_db()
    principal_id(approver)  # cached on the user, as on a request's user
    with django_assert_num_queries(1):
        assert approval_inbox_count(approver) == 2
    assert approval_inbox_count(admin) == 1  # the approver's own request waits for the admin


def test_the_nav_shows_the_inbox_count(client, admin, approver):
    test_operation(actor=admin, request_id="r", note="nav")
    client.force_login(approver)
    html = client.get("/approvals/").content.decode()
    assert "Approval inbox" in html and "waiting for your decision" in html
    assert 'id="approval-filters"' not in html
    auditor_view = client.get("/approvals/all/")
    assert auditor_view.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_approvers_are_emailed_when_a_request_is_made(settings, celery_worker):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PORTAL_BASE_URL = "https://portal.example.internal"
    requester = user_in_role("req-admin", "admin")
    requester.email = "req@example.internal"
    requester.save()
    for name, role in (("ap-one", "approver"), ("ap-two", "admin"), ("reader", "auditor")):
        user = user_in_role(name, role)
        user.email = f"{name}@example.internal"
        user.save()
    alias = _alias_of(requester, "req-alias")
    alias.email = "alias@example.internal"
    alias.save()
    mail.outbox.clear()
    req = test_operation(actor=requester, request_id="r", note="mail")
    # A worker sends it (SMTP never holds up the web request that made the request).
    deadline = time.monotonic() + 30
    while len(mail.outbox) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    recipients = sorted(to for message in mail.outbox for to in message.to)
    # Approvers and admins, never the requester (nor their alias), never auditors.
    assert recipients == ["ap-one@example.internal", "ap-two@example.internal"]
    assert f"https://portal.example.internal/approvals/{req.pk}/" in mail.outbox[0].body
    assert "Record a test note" in mail.outbox[0].subject


def test_without_an_email_backend_nothing_is_sent(settings, admin, approver):
    from portal.approvals.services import approval_notify

    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    approver.email = "a@example.internal"
    approver.save()
    req = test_operation(actor=admin, request_id="r", note="quiet")
    assert approval_notify(approval_id=req.pk) == 0


def test_the_audit_trail_links_request_approvals_and_execution_by_one_id(client, admin,
                                                                         approver, approver2):
    req = approval_require(operation="test.record", actor=admin, payload={"note": "chain"},
                           target="test:chain", request_id="r",
                           context={"role": "Managed HSM Crypto Officer", "scope": "/"})
    approval_decide(approval_id=req.pk, actor=approver, decision="approve", comment="ok 1")
    req = approval_decide(approval_id=req.pk, actor=approver2, decision="approve",
                          comment="ok 2")
    run_job(req)
    chain = [(e.action, e.outcome, e.actor_name) for e in approval_trail(req=req)]
    assert chain == [
        ("approval.request", "recorded", admin.username),
        ("approval.approve", "recorded", approver.username),
        ("approval.approve", "recorded", approver2.username),
        ("approval.execute", "intent", "system"),
        ("approval.execute", "succeeded", "system"),
    ]
    client.force_login(admin)  # an auditor or admin sees the request's audit rows
    page = client.get(f"/approvals/{req.pk}/").content.decode()
    assert req.correlation_id in page and "approval.execute" in page
    assert "Executed" in page and "ok 2" in page


def test_an_approved_request_whose_job_never_ran_is_queued_again(admin, approver):
    """The broker refused the job (job_enqueue_on_commit failed it): the beat sweep gives
    the approved request a new job, which runs it once."""
    from portal.approvals.services import approval_requeue_stalled
    from portal.jobs.models import Job
    from portal.jobs.services import job_finish

    req = test_operation(actor=admin, request_id="r", note="stalled")
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    lost = req.job
    job_finish(job_id=lost.pk, ok=False, error="The task queue is unavailable (OperationalError).")
    assert approval_requeue_stalled() == 1
    req.refresh_from_db()
    assert req.job_id != lost.pk and req.job.status == Job.Status.QUEUED
    assert approval_requeue_stalled() == 0  # a fresh queued job is left alone
    run_job(req)
    req.refresh_from_db()
    assert req.status == "executed" and runs(req.pk) == 1
    assert AuditEvent.objects.filter(action="approval.requeue",
                                     detail__previous_job_id=lost.pk).exists()
