"""Access reviews: owners answer, unanswered ones expire into revocation requests, and the
answers are kept as evidence."""
from datetime import timedelta

import pytest

from access_app import selectors, services
from access_app.models import ReviewItem
from portal.approvals.models import ApprovalRequest
from portal.errors import Conflict, NotAllowed
from tests.access_app.conftest import DEFINITION_PREFIX, ROLE_IDS
from tests.factories import user_in_role


@pytest.fixture
def reviewed(hsm, sdk_access, emulator, admin, key_name):
    """A key owned by 'olivia-owner', one assignment on it, and one at /keys."""
    from keys_app import services as key_services
    from keys_app.spec import spec_from_request

    key = key_services.key_create(hsm=hsm, spec=spec_from_request({
        "name": key_name, "preset": "cmk-wrapping", "tags": {"owner": "olivia-owner"}}),
        actor=admin, request_id="kc")
    on_key = emulator.create_principal("reviewed-on-key")
    on_keys = emulator.create_principal("reviewed-on-keys")
    a = sdk_access.create_role_assignment(f"/keys/{key_name}", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                          on_key["object_id"])
    b = sdk_access.create_role_assignment("/keys", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                          on_keys["object_id"])
    campaign = services.campaign_start(hsm=hsm, name="Q4 review", days=14, actor=admin,
                                       request_id="camp-1")
    return campaign, a.name, b.name, key


def test_campaign_asks_the_key_owner_or_the_admins(reviewed):
    campaign, on_key, on_keys, _ = reviewed
    items = {i.assignment_name: i for i in campaign.items.all()}
    assert items[on_key].owner == "olivia-owner"
    assert items[on_keys].owner == services.HSM_ADMINS


def test_only_the_owner_answers_and_only_once(reviewed, admin, approver):
    campaign, on_key, _, _ = reviewed
    item = campaign.items.get(assignment_name=on_key)
    with pytest.raises(NotAllowed):
        services.review_answer(item_id=item.pk, decision="keep", actor=admin, request_id="a")
    owner = user_in_role("olivia-owner", "approver")
    answered = services.review_answer(item_id=item.pk, decision="keep", comment="Still needed",
                                      actor=owner, request_id="a")
    assert answered.decision == "keep" and answered.decided_by_name == "olivia-owner"
    with pytest.raises(Conflict):
        services.review_answer(item_id=item.pk, decision="revoke", actor=owner, request_id="a")


def test_a_revoke_answer_goes_to_approval(reviewed, admin):
    campaign, _, on_keys, _ = reviewed
    item = campaign.items.get(assignment_name=on_keys)
    answered = services.review_answer(item_id=item.pk, decision="revoke", actor=admin,
                                      request_id="b")
    approval = ApprovalRequest.objects.get(pk=answered.revoke_approval_id)
    assert approval.operation == "role_assignment.delete" and approval.status == "pending"
    assert approval.payload["assignment_name"] == on_keys


def test_unanswered_items_expire_into_revocation_requests(reviewed, monkeypatch):
    campaign, on_key, on_keys, _ = reviewed
    assert services.campaign_close_due() == 0  # not ended yet
    monkeypatch.setattr(services, "now", lambda: campaign.ends_at + timedelta(seconds=1))
    assert services.access_housekeeping()["campaigns_closed"] == 1
    campaign.refresh_from_db()
    assert campaign.status == "closed"
    items = list(campaign.items.all())
    assert items and all(i.decision == ReviewItem.Decision.EXPIRED for i in items)
    expired = campaign.items.get(assignment_name=on_key)
    assert ApprovalRequest.objects.get(pk=expired.revoke_approval_id).status == "pending"
    evidence = selectors.campaign_evidence(campaign=campaign)
    assert evidence["campaign"]["status"] == "closed"
    assert {i["assignment"]: i["decision"] for i in evidence["items"]}[on_keys] == "expired"
