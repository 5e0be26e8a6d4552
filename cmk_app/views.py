"""Pages: customer-managed keys (list, wizard, binding), a key's Usage tab, and the HSM's
Azure resource tab (network, private endpoints, replica regions, Azure RBAC)."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from cmk_app import selectors, services
from cmk_app.forms import AttachForm, PrivateEndpointForm, ReasonForm, RegionForm
from keys_app.views import KeyTabView
from portal.approvals.models import ApprovalRequest
from portal.approvals.responses import page_act, page_pending
from portal.errors import PortalError
from portal.gateway import arm
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_get_for_user
from portal.gateway.views import HsmTabView
from portal.objects import Fact
from portal.permissions import PortalPermissionMixin


def _act(request, call, success: str, fallback: str):
    """One service call for a POST: flash the outcome (or go to the pending approval)."""
    return page_act(request, call, success=success, fallback=fallback)


def _reason(request) -> dict:
    form = ReasonForm(request.POST)
    form.is_valid()
    return {"justification": form.cleaned_data.get("justification", ""),
            "ticket": form.cleaned_data.get("ticket", "")}


def _resource_label(item: dict) -> str:
    used = item.get("key")
    now = f" — uses key {used['name']}" if used else ""
    return f"{arm.TYPE_LABELS[item['kind']]} {item['name']} ({item['location']}){now}"


class BindingListView(PortalPermissionMixin, View):
    """Every resource that uses an HSM key, across HSMs."""

    required_permission = "cmk_app.view_cmkbinding"

    def get(self, request):
        from cmk_app.tables import binding_table

        show_all = request.GET.get("all") == "1"
        rows = selectors.binding_list(include_detached=show_all)
        return render(request, "cmk_app/binding_list.html", {
            "table": binding_table(request=request, rows=rows, filtered=False),
            "show_all": show_all})


class AttachView(PortalPermissionMixin, View):
    """The wizard: key, resource, identity, grant; POST queues the job and shows its steps."""

    required_permission = "cmk_app.attach_cmkbinding"

    def hsm(self, request) -> HsmInstance | None:
        name = request.GET.get("hsm") or request.POST.get("hsm")
        if name:
            return hsm_get_for_user(user=request.user, hsm_id=name)
        return HsmInstance.objects.exclude(arm_resource_id="").order_by("name").first()

    def render_form(self, request, hsm, form=None, status=200):
        context = {"hsm": hsm, "hsms": HsmInstance.objects.order_by("name"), "form": form}
        if hsm is not None:
            try:
                choices = services.attach_choices(hsm=hsm)
            except PortalError as exc:
                context["error"] = exc.message
            else:
                notes = selectors.replica_notes(
                    hsm=hsm, locations=sorted({r["location"] for r in choices["resources"]}),
                    regions=choices["regions"])
                context.update(choices=choices, notes=notes)
                if form is None:
                    context["form"] = self.form(choices, initial={
                        "key_name": request.GET.get("key", ""),
                        "resource_id": request.GET.get("resource", "")})
        return render(request, "cmk_app/attach.html", context, status=status)

    @staticmethod
    def form(choices, data=None, initial=None):
        return AttachForm(data, initial=initial, keys=choices["keys"],
                          resources=[(r["id"], _resource_label(r)) for r in choices["resources"]],
                          identities=[(i["id"], f"{i['name']} ({i['resource_group']}, "
                                                f"{i['location']})") for i in choices["identities"]])

    def get(self, request):
        return self.render_form(request, self.hsm(request))

    def post(self, request):
        hsm = self.hsm(request)
        if hsm is None:
            messages.error(request, "Register an HSM with its Azure resource id first.")
            return redirect("cmk:binding-list")
        try:
            choices = services.attach_choices(hsm=hsm)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(reverse("cmk:attach") + f"?hsm={hsm.name}")
        form = self.form(choices, request.POST)
        if not form.is_valid():
            return self.render_form(request, hsm, form=form, status=400)
        data = form.cleaned_data
        existing = data["identity_mode"] == "existing"
        try:
            result = services.cmk_attach_start(
                hsm=hsm, key_name=data["key_name"], resource_id=data["resource_id"],
                identity_id=data["identity_id"] if existing else "",
                identity_name="" if existing else data["identity_name"], grant=data["grant"],
                actor=request.user, request_id=request.id, **_reason(request))
        except PortalError as exc:
            form.add_error(None, exc.message)
            return self.render_form(request, hsm, form=form, status=400)
        if isinstance(result, ApprovalRequest):
            return page_pending(request, result)
        messages.info(request, "The wizard is running; its steps show below as they happen.")
        return redirect(result.get_absolute_url())


class BindingDetailView(PortalPermissionMixin, View):
    required_permission = "cmk_app.view_cmkbinding"

    def get(self, request, binding_id: int):
        row = selectors.binding_get(binding_id=binding_id)
        facts = [
            Fact("Resource", row.resource_name, kind="code"),
            Fact("Type", row.get_kind_display()),
            Fact("Resource group", row.resource_group or "—"),
            Fact("Location", row.location or "—"),
            Fact("Key", row.key_name, url=reverse("keys:key-detail", kwargs={
                "hsm_id": row.hsm.name, "name": row.key_name})),
            Fact("HSM", row.hsm.name, url=reverse("gateway:hsm-detail",
                                                  kwargs={"hsm_id": row.hsm.name})),
            Fact("Version in use", row.version_words),
            Fact("Status", row.get_status_display(), kind="status",
                 tone={"active": "ok", "failed": "bad", "detached": "muted"}.get(row.status, "warn")),
            Fact("Identity", row.identity_id or "—", kind="code" if row.identity_id else "text"),
            Fact("Identity principal id", row.identity_principal_id or "—",
                 kind="code" if row.identity_principal_id else "text"),
            Fact("Origin", row.get_origin_display()),
            Fact("Last seen", row.last_seen_at, kind="time", note="Not scanned yet"),
            Fact("Resource id", row.resource_id, kind="code"),
        ]
        return render(request, "cmk_app/binding_detail.html", {
            "binding": row, "facts": facts, "crumb_current": row.resource_name or f"#{row.pk}"})


class BindingDetachView(PortalPermissionMixin, View):
    required_permission = "cmk_app.attach_cmkbinding"

    def post(self, request, binding_id: int):
        url = reverse("cmk:binding-detail", kwargs={"binding_id": binding_id})
        return _act(request, lambda: services.cmk_detach(
            binding_id=binding_id, actor=request.user, request_id=request.id, **_reason(request)),
            "Detached: the resource uses Microsoft-managed keys again.", url)


class KeyUsageView(KeyTabView):
    """A key's Usage tab: the resources that use it and the version each uses."""

    required_permission = "cmk_app.view_cmkbinding"
    tab = "usage"

    def tab_context(self, record) -> dict:
        rows = list(selectors.binding_list(hsm=self.hsm, key_name=record.name))
        notes, regions_error = {}, ""
        if rows:
            try:
                regions = arm.hsm_resource_get(self.hsm)["regions"]
            except PortalError as exc:
                regions, regions_error = [], exc.message
            notes = selectors.replica_notes(hsm=self.hsm, locations=[r.location for r in rows],
                                            regions=regions)
        for row in rows:
            row.replica_note = notes.get(row.location, "")
            row.behind = bool(row.version_in_use and record.version and
                              row.version_in_use != record.version)
        return {"bindings": rows, "regions_error": regions_error}


class HsmResourceView(HsmTabView):
    """The HSM's management plane through Resource Manager, and Azure RBAC on it."""

    required_permission = "cmk_app.view_hsmresource"
    tab = "resource"
    template = "cmk_app/hsm_resource.html"

    def tab_context(self, hsm):
        context = {}
        try:
            context["resource"] = arm.hsm_resource_get(hsm)
        except PortalError as exc:
            context["resource_error"] = exc.message
            return context
        try:
            context["azure_rbac"] = arm.hsm_azure_role_assignments(hsm)
        except PortalError as exc:
            context["azure_rbac_error"] = exc.message
        return context


class HsmResourceActionView(PortalPermissionMixin, View):
    required_permission = "cmk_app.change_hsmresource"

    def back(self, hsm_id: str) -> str:
        return reverse("cmk:hsm-resource", kwargs={"hsm_id": hsm_id})


class HsmNetworkView(HsmResourceActionView):
    def post(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        enabled = request.POST.get("public_network_access") == "Enabled"
        return _act(request, lambda: services.hsm_network_access_set(
            hsm=hsm, enabled=enabled, actor=request.user, request_id=request.id,
            **_reason(request)),
            f"Public network access of {hsm.name} is {'on' if enabled else 'off'}.",
            self.back(hsm_id))


class HsmPurgeProtectionView(HsmResourceActionView):
    def post(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return _act(request, lambda: services.hsm_purge_protection_enable(
            hsm=hsm, actor=request.user, request_id=request.id, **_reason(request)),
            f"Purge protection of {hsm.name} is on.", self.back(hsm_id))


class HsmPrivateEndpointView(HsmResourceActionView):
    def post(self, request, hsm_id, name):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = PrivateEndpointForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose Approve or Reject (description: at most 140 "
                                    "characters).")
            return redirect(self.back(hsm_id))
        data = form.cleaned_data
        return _act(request, lambda: services.hsm_private_endpoint_decide(
            hsm=hsm, name=name, status=data["status"], description=data["description"],
            actor=request.user, request_id=request.id, justification=data["justification"],
            ticket=data["ticket"]), f"Connection {name} is {data['status'].lower()}.",
            self.back(hsm_id))


class HsmReplicaAddView(HsmResourceActionView):
    def post(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = RegionForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Name an Azure region, such as northeurope.")
            return redirect(self.back(hsm_id))
        region = form.cleaned_data["region"]
        return _act(request, lambda: services.hsm_replica_add(
            hsm=hsm, region=region, actor=request.user, request_id=request.id),
            f"Adding a replica of {hsm.name} in {region}: it shows Provisioning until it is "
            "ready.", self.back(hsm_id))


class HsmReplicaRemoveView(HsmResourceActionView):
    def post(self, request, hsm_id, region):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return _act(request, lambda: services.hsm_replica_remove(
            hsm=hsm, region=region, actor=request.user, request_id=request.id),
            f"Removing the replica of {hsm.name} in {region}.", self.back(hsm_id))
