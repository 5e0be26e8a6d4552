"""Real local RBAC objects for the every-page walk: a custom role, a drift assignment, an
access request waiting for approval, and an open access review (kwargs of the Access pages)."""
import uuid


def seed_access(hsm, admin) -> dict:
    from access_app import services
    from portal.gateway import rbac

    services.rbac_sync(hsm=hsm)
    role = services.role_definition_save(
        hsm=hsm, name=None, role_name=f"Page role {uuid.uuid4().hex[:6]}",
        description="Reads and unwraps keys",
        data_actions=["Microsoft.KeyVault/managedHsm/keys/read/action",
                      "Microsoft.KeyVault/managedHsm/keys/unwrap/action"],
        actor=admin, request_id=uuid.uuid4().hex)
    principal = str(uuid.uuid4())
    # Made outside the portal (the portal's own gateway, no request): drift on the next sync.
    made = rbac.role_assignment_create(hsm, scope="/keys", definition_id=role.definition_id,
                                       principal_id=principal, name=str(uuid.uuid4()))
    services.rbac_sync(hsm=hsm)
    access_request, _ = services.access_request_create(
        hsm=hsm, principal_id=str(uuid.uuid4()), role="Managed HSM Crypto User",
        scope="/keys/page-key", justification="Seeded for the page walk.", ticket="PAGE-1",
        duration_hours=4, actor=admin, request_id=uuid.uuid4().hex)
    campaign = services.campaign_start(hsm=hsm, name="Page review", days=7, actor=admin,
                                       request_id=uuid.uuid4().hex)
    return {"role": role.name, "assignment": made["name"], "access_request_id": access_request.pk,
            "campaign_id": campaign.pk, "approval_id": access_request.approval_request_id}
