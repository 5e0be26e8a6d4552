"""What the security-domain area adds to the portal at start-up (called from
DrAppConfig.ready): role permissions, the approvable upload, the HSM's "Security domain"
tab, and its Celery tasks."""


def describe_upload(payload: dict) -> dict:
    """What an approver sees beside a security-domain upload request."""
    return {"title": f"Upload a security domain to HSM {payload.get('hsm', '?')}",
            "change": [("HSM", payload.get("hsm", "")),
                       ("Security domain file SHA-256", payload.get("blob_sha256", "")),
                       ("Size (bytes)", payload.get("size", "")),
                       ("Prepared for exchange key (SHA-256)",
                        payload.get("exchange_key_sha256", "")),
                       ("Saved from HSM", payload.get("source_hsm") or "not given")],
            "context": [("Effect", "The HSM takes the uploaded security domain: it then holds "
                                   "the keys of the HSM the domain came from.")]}


def ready() -> None:
    from dr_app import security_domain, security_domain_tasks  # noqa: F401  (registers tasks)
    from portal.approvals import registry
    from portal.context_processors import nav_register
    from portal.objects import Tab
    from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

    role_grant(ADMIN, "dr_app.view_custodian", "dr_app.change_custodian",
               "dr_app.manage_security_domain")
    role_grant(AUDITOR, "dr_app.view_custodian")
    role_grant(APPROVER, "dr_app.view_custodian")
    registry.register(security_domain.UPLOAD_OPERATION, security_domain.security_domain_upload,
                      label="Upload a security domain (recovery)", describe=describe_upload)

    nav_register("Security domain", "dr:sd-home", "dr_app.view_custodian", section="Recovery",
                 active_for=("dr:sd-home",))

    from dr_app.security_domain_selectors import hsm_security_domain_facts
    from portal.gateway.selectors import hsm_summary_register

    hsm_summary_register(hsm_security_domain_facts)  # the HSM page's Essentials

    from portal.gateway.views import HSM_TABS

    tab = Tab("security-domain", "Security domain", "dr:sd-overview", "dr_app.view_custodian")
    if all(existing.slug != tab.slug for existing in HSM_TABS):
        before = next((i for i, t in enumerate(HSM_TABS) if t.slug == "jobs"), len(HSM_TABS))
        HSM_TABS.insert(before, tab)
