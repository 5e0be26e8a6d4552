"""The approval pages: inbox, my requests, all requests, one request; deciding and
cancelling through the page; who sees what."""
from portal.approvals.models import ApprovalRequest
from tests.portal.approvals.conftest import test_operation


def test_the_pages_per_role(client, personas):
    admin = personas["admin"]
    req = test_operation(actor=admin, request_id="r", note="pages")
    expected = {
        # role: (inbox, mine, all, detail)
        "admin": (200, 200, 200, 200),
        "approver": (200, 200, 200, 200),
        "auditor": (403, 200, 200, 200),
        "outsider": (403, 403, 403, 403),
    }
    for role, statuses in expected.items():
        client.force_login(personas[role])
        got = tuple(client.get(url).status_code for url in (
            "/approvals/", "/approvals/mine/", "/approvals/all/", f"/approvals/{req.pk}/"))
        assert got == statuses, role
    client.force_login(personas["auditor"])
    page = client.get(f"/approvals/{req.pk}/").content.decode()
    assert 'id="decide-form"' not in page and 'id="cancel-form"' not in page
    assert 'id="trail"' in page  # auditors read the request's audit rows
    assert client.post(f"/approvals/{req.pk}/decide/", {"decision": "approve"}).status_code == 403


def test_an_approver_decides_on_the_page_and_sees_the_change(client, admin, approver):
    req = test_operation(actor=admin, request_id="r", note="page-approve")
    client.force_login(approver)
    inbox = client.get("/approvals/").content.decode()
    assert f'href="/approvals/{req.pk}/"' in inbox and "Record a test note" in inbox
    page = client.get(f"/approvals/{req.pk}/").content.decode()
    assert 'id="decide-form"' in page
    assert "page-approve" in page  # the exact change: the payload's values
    assert "nothing recorded" in page  # the describer's context, beside it
    done = client.post(f"/approvals/{req.pk}/decide/", {"decision": "approve",
                                                        "comment": "looks right"}, follow=True)
    assert "it runs now" in done.content.decode()
    req.refresh_from_db()
    assert req.status == "approved" and req.decisions.get().comment == "looks right"
    assert f'href="/approvals/{req.pk}/"' not in client.get("/approvals/").content.decode()


def test_a_denial_on_the_page(client, admin, approver):
    req = test_operation(actor=admin, request_id="r", note="page-deny")
    client.force_login(approver)
    done = client.post(f"/approvals/{req.pk}/decide/", {"decision": "deny", "comment": "no"},
                       follow=True)
    assert f"Denied request #{req.pk}" in done.content.decode()
    bad = client.post(f"/approvals/{req.pk}/decide/", {"decision": "maybe"}, follow=True)
    assert "Decide &#x27;approve&#x27; or &#x27;deny&#x27;." in bad.content.decode()
    req.refresh_from_db()
    assert req.status == "denied"


def test_the_requester_sees_their_requests_and_cancels_one_on_the_page(client, admin,
                                                                       approver):
    req = test_operation(actor=admin, request_id="r", note="page-cancel")
    client.force_login(admin)
    mine = client.get("/approvals/mine/").content.decode()
    assert f'href="/approvals/{req.pk}/"' in mine
    page = client.get(f"/approvals/{req.pk}/").content.decode()
    assert 'id="cancel-form"' in page and 'id="decide-form"' not in page
    assert "You made this request" in page
    client.force_login(approver)
    refused = client.post(f"/approvals/{req.pk}/cancel/", follow=True)
    assert "Only the requester can cancel" in refused.content.decode()
    client.force_login(admin)
    done = client.post(f"/approvals/{req.pk}/cancel/", follow=True)
    assert f"Cancelled request #{req.pk}" in done.content.decode()
    assert ApprovalRequest.objects.get(pk=req.pk).status == "cancelled"


def test_all_requests_filters_by_status(client, admin, approver):
    kept = test_operation(actor=admin, request_id="r", note="a")
    gone = test_operation(actor=admin, request_id="r", note="b")
    from portal.approvals.services import approval_cancel

    approval_cancel(approval_id=gone.pk, actor=admin)
    client.force_login(approver)
    pending = client.get("/approvals/all/?status=pending").content.decode()
    assert f'href="/approvals/{kept.pk}/"' in pending
    assert f'href="/approvals/{gone.pk}/"' not in pending
    ignored = client.get("/approvals/all/?status=nonsense")  # an unknown value: no filter
    assert ignored.status_code == 200
    assert f'href="/approvals/{gone.pk}/"' in ignored.content.decode()
    assert client.get("/approvals/999999/").status_code == 404


def test_policies_are_shown_and_changed_only_by_an_admin_audited(client, admin, approver,
                                                                  auditor):
    import io

    import pytest
    from django.core.management import CommandError, call_command

    from portal.approvals.models import ApprovalPolicy
    from portal.audit.models import AuditEvent

    ApprovalPolicy.objects.all().delete()
    client.force_login(auditor)
    page = client.get("/approvals/policies/").content.decode()
    assert 'id="built-in-note"' in page and "Managed HSM Crypto Officer" in page
    with pytest.raises(CommandError, match="active admin"):
        call_command("approval_policy", "set", "Purges need three", "--as", approver.username)
    with pytest.raises(CommandError, match="from 1 to 10"):
        call_command("approval_policy", "set", "Purges need three", "--approvers", "11",
                     "--as", admin.username)
    call_command("approval_policy", "set", "Purges need three", "--operation", "key.purge",
                 "--approvers", "3", "--hours", "8", "--priority", "5", "--as", admin.username,
                 stdout=io.StringIO())
    req = test_operation(actor=admin, request_id="r", note="policy")  # not a purge: 1
    assert req.required_approvals == 1  # only the stored policy exists; it does not match
    row = AuditEvent.objects.get(action="approval_policy.set")
    assert row.actor_name == admin.username and row.detail["after"]["required_approvers"] == 3
    page = client.get("/approvals/policies/").content.decode()
    assert "Purges need three" in page and 'id="built-in-note"' not in page
    call_command("approval_policy", "delete", "Purges need three", "--as", admin.username,
                 stdout=io.StringIO())
    assert AuditEvent.objects.filter(action="approval_policy.delete").exists()
