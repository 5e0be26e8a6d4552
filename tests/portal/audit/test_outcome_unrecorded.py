"""When the outcome row fails after the action, the error says what happened, never
"nothing was done"."""
import pytest

from portal.audit.models import AuditEvent
from portal.audit.services import AuditOutcomeUnrecorded, audit_record, audit_result
from portal.errors import AuditUnavailable, api_exception_handler
from tests.portal.audit.test_fail_closed import audit_table_unavailable

pytestmark = pytest.mark.django_db(transaction=True)


def _intent():
    return audit_record(actor=None, action="key.rotate", target="hsm:primary/key:app-key")


def test_an_unrecorded_success_says_the_action_happened():
    intent = _intent()
    with audit_table_unavailable(), pytest.raises(AuditOutcomeUnrecorded) as caught:
        audit_result(intent, ok=True, done="The HSM rotated key app-key")
    error = caught.value
    assert isinstance(error, AuditUnavailable) and error.status == 503
    assert error.message.startswith("The HSM rotated key app-key, but the audit trail could "
                                    f"not record the outcome (intent #{intent.seq}).")
    assert "nothing was done" not in error.message
    assert (error.intent_seq, error.acted, error.code) == (intent.seq, True,
                                                          "audit_outcome_unrecorded")
    # The intent stands alone in the trail: an auditor sees the gap.
    assert list(AuditEvent.objects.values_list("seq", "outcome")) == [(intent.seq, "intent")]


def test_an_unrecorded_success_without_words_names_the_action_and_target():
    intent = _intent()
    with audit_table_unavailable(), pytest.raises(AuditOutcomeUnrecorded) as caught:
        audit_result(intent, ok=True)
    assert caught.value.message.startswith(
        "key.rotate on hsm:primary/key:app-key was carried out, but the audit trail")


def test_an_unrecorded_failure_says_it_did_not_succeed():
    intent = _intent()
    with audit_table_unavailable(), pytest.raises(AuditOutcomeUnrecorded) as caught:
        audit_result(intent, ok=False, detail={"error": "hsm_unavailable"})
    assert caught.value.acted is False
    assert "did not succeed, and the audit trail could not record that" in caught.value.message
    assert "nothing was done" not in caught.value.message


def test_the_api_answers_503_with_the_truthful_sentence(rf):
    intent = _intent()
    with audit_table_unavailable(), pytest.raises(AuditOutcomeUnrecorded) as caught:
        audit_result(intent, ok=True, done="The HSM rotated key app-key")
    request = rf.post("/api/v1/hsms/primary/keys/app-key/rotate/")
    request.id = "server-request-id"
    response = api_exception_handler(caught.value, {"request": request})
    assert response.status_code == 503
    body = response.data["error"]
    assert body["code"] == "audit_outcome_unrecorded"
    assert body["message"].startswith("The HSM rotated key app-key, but")
