"""Who gets into which page and API endpoint: every role, plus anonymous callers."""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from portal.jobs.models import Job

ROLES = ("admin", "approver", "auditor", "outsider")

# (method, path, {persona: status}); personas not named get 403.
PAGES = [
    ("get", "/", {"admin": 200, "approver": 200, "auditor": 200, "outsider": 200}),
    ("get", "/hsms/", {"admin": 200, "approver": 200, "auditor": 200}),
    ("get", "/audit/", {"admin": 200, "auditor": 200}),
    ("get", "/audit/export/?export=csv", {"admin": 200, "auditor": 200}),
    ("get", "/jobs/", {"admin": 200, "auditor": 200}),
    ("get", "/jobs/{job}/", {"admin": 200, "auditor": 200}),
    ("post", "/jobs/", {"admin": 302}),
    ("post", "/hsms/", {"admin": 302}),
    ("get", "/hsms/{hsm}/deregister/", {"admin": 200}),
    ("post", "/hsms/{hsm}/deregister/", {"admin": 302}),
    # The docs are a page: anonymous visitors go to sign-in (the schema answers 401).
    ("get", "/api/docs/", {role: 200 for role in ROLES}),
]
API = [
    ("get", "/api/v1/hsms/", {"admin": 200, "approver": 200, "auditor": 200}),
    ("post", "/api/v1/hsms/", {"admin": 201}),
    ("get", "/api/v1/jobs/", {"admin": 200, "auditor": 200}),
    ("get", "/api/v1/jobs/{job}/", {"admin": 200, "auditor": 200}),
    ("post", "/api/v1/jobs/", {"admin": 202}),
    ("get", "/api/v1/audit-events/", {"admin": 200, "auditor": 200}),
    ("get", "/api/v1/audit-events/?export=json", {"admin": 200, "auditor": 200}),
    # Everyone lists their own API tokens (admins everyone's: tests/portal/accounts/).
    ("get", "/api/v1/tokens/", {role: 200 for role in ROLES}),
    ("get", "/api/v1/hsms/{hsm}/", {"admin": 200, "approver": 200, "auditor": 200}),
    ("delete", "/api/v1/hsms/{hsm}/", {"admin": 200}),
    ("get", "/api/schema/", {role: 200 for role in ROLES}),
]


@pytest.fixture
def job(db):
    from portal.gateway.models import HsmInstance

    # Registered with the job: the HSM paths need one (admin, first, deregisters it).
    HsmInstance.objects.create(name="matrix", uri="https://matrix.managedhsm.azure.net")
    return Job.objects.create(kind="system.selfcheck", actor_name="system")


def _call(client, method, path, job):
    path = path.format(job=job.pk, hsm="matrix")
    if "deregister" in path and method == "post":
        return client.post(path, {"confirm_name": "matrix"})
    if method == "delete" and path.startswith("/api/v1/hsms/"):
        return client.delete(path, {"confirm_name": "matrix"}, format="json")
    if method == "post" and path == "/hsms/":
        return client.post(path, {"name": "extra", "uri": "https://extra.managedhsm.azure.net",
                                  "role": "secondary"})
    if method == "post" and path.startswith("/api/v1/hsms/"):
        return client.post(path, {"name": "extra", "uri": "https://extra.managedhsm.azure.net"},
                           format="json")
    return getattr(client, method)(path)


@pytest.mark.parametrize("method,path,allowed", PAGES, ids=[f"{m} {p}" for m, p, _ in PAGES])
def test_pages_admit_only_their_roles(client, personas, job, method, path, allowed):
    for role, user in personas.items():
        client.force_login(user)
        response = _call(client, method, path, job)
        assert response.status_code == allowed.get(role, 403), (role, path)
        client.logout()


@pytest.mark.parametrize("method,path,allowed", PAGES, ids=[f"{m} {p}" for m, p, _ in PAGES])
def test_pages_send_anonymous_users_to_sign_in(client, job, method, path, allowed):
    response = _call(client, method, path, job)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("method,path,allowed", API, ids=[f"{m} {p}" for m, p, _ in API])
def test_api_admits_only_its_roles(api_client, personas, job, method, path, allowed):
    for role, user in personas.items():
        api_client.force_authenticate(user)
        response = _call(api_client, method, path, job)
        assert response.status_code == allowed.get(role, 403), (role, path, response.content[:200])
        if response.status_code == 403:
            assert response.json()["error"]["code"] == "forbidden"
        api_client.force_authenticate(None)


@pytest.mark.parametrize("method,path,allowed", API, ids=[f"{m} {p}" for m, p, _ in API])
def test_api_answers_anonymous_callers_401(api_client, job, method, path, allowed):
    response = _call(api_client, method, path, job)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


PUBLIC_VIEWS = {"SignInView", "SignOutView", "EntraStartView", "EntraCallbackView", "healthz"}


def _views(resolver, prefix=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _views(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def test_every_page_and_endpoint_declares_who_may_use_it():
    undeclared = []
    for route, callback in _views(get_resolver()):
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        name = view_class.__name__ if view_class else callback.__name__
        if name in PUBLIC_VIEWS:
            continue
        if not getattr(view_class, "required_permission", None):
            undeclared.append(route)
    assert undeclared == []


def test_admin_registers_an_hsm_from_the_page_and_bad_input_is_a_400(client, admin):
    from portal.audit.models import AuditEvent
    from portal.gateway.models import HsmInstance

    client.force_login(admin)
    bad = client.post("/hsms/", {"name": "Bad Name!", "uri": "http://plain.example.test",
                                 "role": "primary"})
    assert bad.status_code == 400
    assert not HsmInstance.objects.exists()
    good = client.post("/hsms/", {"name": "prod-weu", "uri": "https://prod-weu.managedhsm.azure.net/",
                                  "role": "primary"})
    assert good.status_code == 302
    assert HsmInstance.objects.get(name="prod-weu").uri == "https://prod-weu.managedhsm.azure.net"
    assert AuditEvent.objects.filter(action="hsm.register", target="hsm:prod-weu").exists()
