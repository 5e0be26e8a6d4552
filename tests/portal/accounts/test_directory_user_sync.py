"""The portal user of a directory principal: one per object id + tenant, even when its
first sign-ins race (serialized on the database, not in memory)."""
import uuid

from django.contrib.auth import get_user_model

from portal.accounts.entra import EntraClaims
from portal.accounts.models import DirectoryIdentity
from portal.accounts.services import directory_user_sync, entra_roles
from portal.audit.models import AuditEvent
from portal.permissions import sync_roles
from tests.support.race import at_once


def _claims(**extra) -> EntraClaims:
    return EntraClaims(object_id=str(uuid.uuid4()), tenant_id=str(uuid.uuid4()),
                       username="race@contoso.test", display_name="Race", **extra)


def test_concurrent_first_sign_ins_of_one_principal_make_one_user(transactional_db):
    sync_roles()
    claims = _claims(app_roles=("admin",))
    outcomes = at_once([lambda: directory_user_sync(claims=claims, request_id="r")] * 4, timeout=30)
    assert [repr(o) for o in outcomes if isinstance(o, Exception)] == []
    results = [(user.pk, tuple(roles)) for user, roles in outcomes]
    assert len({pk for pk, _ in results}) == 1 and {r for _, r in results} == {("admin",)}
    assert DirectoryIdentity.objects.filter(object_id=claims.object_id).count() == 1
    assert get_user_model().objects.filter(username="race@contoso.test").count() == 1
    assert AuditEvent.objects.filter(action="user.create").count() == 1


def test_one_object_id_in_another_tenant_is_another_user(db):
    sync_roles()
    first = _claims(app_roles=("auditor",))
    other = EntraClaims(object_id=first.object_id, tenant_id=str(uuid.uuid4()),
                        username=first.username, display_name="Other", app_roles=("auditor",))
    a, _ = directory_user_sync(claims=first, request_id="r")
    b, _ = directory_user_sync(claims=other, request_id="r")
    assert a.pk != b.pk and a.username != b.username


def test_role_mapping_is_configurable(settings):
    settings.ENTRA_ROLE_MAP = {"Portal.Admin": "admin", "Portal.Reader": "auditor",
                               "Portal.Unknown": "superuser"}
    settings.ENTRA_GROUP_MAP = {"AB12": "approver"}
    assert entra_roles(app_roles=["Portal.Admin", "admin"], groups=[]) == ["admin"]
    assert entra_roles(app_roles=["Portal.Unknown"], groups=["ab12"]) == ["approver"]
    assert entra_roles(app_roles=["Portal.Reader"], groups=["zz"]) == ["auditor"]
