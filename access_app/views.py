"""Local RBAC pages: the HSM's Access tab (assignments, drift, role definitions), a key's
Access tab (effective access), access requests and access reviews. Each action calls one
service; a grant or a revocation answers with its pending approval."""
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from access_app import selectors, services
from access_app.forms import (AccessRequestForm, AdoptForm, CampaignForm, ConfirmForm,
                              RevokeForm, ReviewAnswerForm, RoleDefinitionForm, action_short,
                              action_title)
from keys_app.views import KeyTabView
from portal.approvals.responses import page_outcome
from portal.errors import PortalError
from portal.gateway.selectors import hsm_get_for_user, hsm_list
from portal.gateway.views import HsmTabView
from portal.objects import Fact
from portal.permissions import PortalPermissionMixin

VIEW_ASSIGNMENTS = "access_app.view_roleassignmentrecord"
GRANT = "access_app.grant_roleassignmentrecord"


def _form_errors(form, exc: PortalError) -> None:
    for field, errors in exc.fields.items():
        for error in errors if isinstance(errors, list) else [errors]:
            form.add_error(field if field in form.fields else None, str(error))
    if not exc.fields:
        form.add_error(None, exc.message)


def _role_save(view, request, hsm_id: str, *, role: str | None):
    """Create (role None) or update a custom role from the posted form: to the role's page,
    or the form again (400) with the service's sentences on its fields."""
    hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
    view.form = form = RoleDefinitionForm(request.POST)
    if form.is_valid():
        try:
            record = services.role_definition_save(
                hsm=hsm, name=role, actor=request.user, request_id=request.id,
                **form.cleaned_data)
        except PortalError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, f"{'Updated' if role else 'Created'} role {record.role_name}.")
            return redirect("access:role-detail", hsm_id=hsm.name, role=record.name)
    response = view.get(request, hsm_id, **({"role": role} if role else {}))
    response.status_code = 400
    return response


def _step_up_for(request, scope: str) -> None:
    """Grants at `/` (the whole HSM) need a recent sign-in (step-up)."""
    if (scope or "").strip() == "/":
        from portal.accounts.stepup import ensure_recent_sign_in

        ensure_recent_sign_in(request, operation="role_assignment.create")


class AccessTabView(HsmTabView):
    """A page under the HSM's Access tab."""

    required_permission = VIEW_ASSIGNMENTS
    tab = "access"

    def get(self, request, hsm_id: str, **kwargs):
        self.kwargs_extra = kwargs
        return super().get(request, hsm_id)


class HsmAccessView(AccessTabView):
    template = "access_app/hsm_access.html"

    def tab_context(self, hsm):
        rows = list(selectors.role_assignments(hsm=hsm))
        names = selectors.principal_names([r.principal_id for r in rows])
        for row in rows:
            row.principal_name = names.get(row.principal_id.lower(), "")
        return {"assignments": rows, "drift": [r for r in rows if r.drift],
                "synced": selectors.role_definitions(hsm=hsm).first(),
                "definition_count": selectors.role_definitions(hsm=hsm).count()}


class RbacSyncView(PortalPermissionMixin, View):
    required_permission = "access_app.sync_roledefinitionrecord"

    def post(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        target = reverse("access:hsm-access", kwargs={"hsm_id": hsm.name})
        try:
            counts = services.rbac_sync(hsm=hsm, actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(target)
        messages.success(request, f"Read {counts['assignments']} role assignments and "
                                  f"{counts['definitions']} role definitions from {hsm.name}; "
                                  f"{counts['drift_new']} new made outside the portal.")
        return redirect(target)


class RoleListView(AccessTabView):
    required_permission = "access_app.view_roledefinitionrecord"
    template = "access_app/role_list.html"

    def tab_context(self, hsm):
        return {"definitions": selectors.role_definitions(hsm=hsm)}


class RoleCreateView(AccessTabView):
    required_permission = {"GET": "access_app.add_roledefinitionrecord",
                           "POST": "access_app.add_roledefinitionrecord"}
    template = "access_app/role_form.html"

    def tab_context(self, hsm):
        return {"form": getattr(self, "form", None) or RoleDefinitionForm(), "definition": None}

    def post(self, request, hsm_id):
        return _role_save(self, request, hsm_id, role=None)


class RoleDetailView(AccessTabView):
    """Show a role definition; a custom one is edited here too (POST updates it)."""

    required_permission = {"GET": "access_app.view_roledefinitionrecord",
                           "POST": "access_app.change_roledefinitionrecord"}
    template = "access_app/role_form.html"

    def tab_context(self, hsm):
        definition = selectors.role_definition_get(hsm=hsm, name=self.kwargs_extra["role"])
        form = getattr(self, "form", None) or RoleDefinitionForm(initial={
            "role_name": definition.role_name, "description": definition.description,
            "data_actions": definition.data_actions,
            "not_data_actions": definition.not_data_actions})
        return {"form": form, "definition": definition, "crumb_current": definition.role_name,
                "data_action_rows": [(action_title(a), action_short(a))
                                     for a in definition.data_actions],
                "not_data_action_rows": [(action_title(a), action_short(a))
                                         for a in definition.not_data_actions],
                "in_use": selectors.role_assignments(hsm=hsm).filter(
                    role_definition_id__iexact=definition.definition_id).count()}

    def post(self, request, hsm_id, role):
        return _role_save(self, request, hsm_id, role=role)


class RoleDeleteView(PortalPermissionMixin, View):
    required_permission = "access_app.delete_roledefinitionrecord"

    def post(self, request, hsm_id, role):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = ConfirmForm(request.POST)
        form.is_valid()
        try:
            services.role_definition_delete(hsm=hsm, name=role,
                                            confirm_name=form.cleaned_data.get("confirm_name"),
                                            actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("access:role-detail", hsm_id=hsm.name, role=role)
        messages.success(request, "Deleted the role definition.")
        return redirect("access:role-list", hsm_id=hsm.name)


class AssignmentDetailView(AccessTabView):
    template = "access_app/assignment_detail.html"

    def tab_context(self, hsm):
        row = selectors.role_assignment_get(hsm=hsm, name=self.kwargs_extra["assignment"])
        row.principal_name = selectors.principal_names([row.principal_id]).get(
            row.principal_id.lower(), "")
        return {"assignment": row, "adopt_form": AdoptForm(),
                "crumb_current": f"{row.role_name or 'Role'} at {row.scope}"}


class AssignmentRevokeView(PortalPermissionMixin, View):
    required_permission = GRANT

    def post(self, request, hsm_id, assignment):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = RevokeForm(request.POST)
        form.is_valid()
        back = reverse("access:assignment-detail", kwargs={"hsm_id": hsm.name,
                                                           "assignment": assignment})
        try:
            result = services.role_assignment_revoke_request(
                hsm=hsm, name=assignment, actor=request.user, request_id=request.id,
                justification=form.cleaned_data.get("justification", ""))
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(back)
        return page_outcome(request, result, success="Revoked the role assignment.",
                            url=reverse("access:hsm-access", kwargs={"hsm_id": hsm.name}))


class AssignmentAdoptView(PortalPermissionMixin, View):
    required_permission = GRANT

    def post(self, request, hsm_id, assignment):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = AdoptForm(request.POST)
        back = reverse("access:assignment-detail", kwargs={"hsm_id": hsm.name,
                                                           "assignment": assignment})
        if not form.is_valid():
            messages.error(request, "Not adopted: " + " ".join(
                f"{form.fields[f].label}: {' '.join(e)}" if f in form.fields else " ".join(e)
                for f, e in form.errors.items()))
            return redirect(back)
        row = selectors.role_assignment_get(hsm=hsm, name=assignment)
        _step_up_for(request, row.scope)
        try:
            access_request, pending = services.drift_adopt(
                hsm=hsm, name=assignment, actor=request.user, request_id=request.id,
                **form.cleaned_data)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(back)
        return page_outcome(request, pending, success="Adopted the assignment into a request.",
                            url=access_request.get_absolute_url())


class KeyAccessView(KeyTabView):
    """A key's Access tab: effective access merged from /, /keys and /keys/<name>."""

    required_permission = VIEW_ASSIGNMENTS
    tab = "access"

    def tab_context(self, record) -> dict:
        rows = selectors.effective_access(hsm=self.hsm, key_name=record.name)
        return {"effective": rows, "unwrappers": [r for r in rows if r.can_unwrap]}


class AccessRequestListView(PortalPermissionMixin, View):
    required_permission = "access_app.view_accessrequest"

    def get(self, request):
        status = request.GET.get("status", "")
        if status not in {s for s, _ in services.AccessRequest.Status.choices}:
            status = ""
        rows = list(selectors.access_requests(status=status)[:200])
        return render(request, "access_app/request_list.html", {
            "requests": rows, "status": status,
            "statuses": services.AccessRequest.Status.choices})


class AccessRequestCreateView(PortalPermissionMixin, View):
    required_permission = {"GET": "access_app.add_accessrequest",
                           "POST": "access_app.add_accessrequest"}

    def _form(self, data=None, initial=None):
        hsms = list(hsm_list())
        name = (data or {}).get("hsm") or (initial or {}).get("hsm") or (
            hsms[0].name if hsms else "")
        hsm = next((h for h in hsms if h.name == name), None)
        roles = list(selectors.role_definitions(hsm=hsm)) if hsm else []
        return AccessRequestForm(data, initial=initial, hsms=hsms, roles=roles), hsm

    def get(self, request, form=None, status=200):
        if form is None:
            initial = {k: request.GET[k] for k in ("hsm", "scope", "role", "principal_id")
                       if k in request.GET and len(request.GET[k]) <= 200}
            form, _ = self._form(initial=initial)
        query = request.GET.get("q", "").strip()[:120]
        found, search_error = selectors.principal_search(query) if query else ([], "")
        keep = request.GET.copy()
        keep.pop("q", None)
        keep.pop("principal_id", None)
        return render(request, "access_app/request_form.html", {
            "form": form, "q": query, "found": found, "search_error": search_error,
            "keep": keep.urlencode()}, status=status)

    def post(self, request):
        form, hsm = self._form(request.POST)
        if form.is_valid() and hsm is not None:
            data = form.cleaned_data
            _step_up_for(request, data["scope"])
            try:
                access_request, pending = services.access_request_create(
                    hsm=hsm, principal_id=data["principal_id"], role=data["role"],
                    scope=data["scope"], justification=data["justification"],
                    ticket=data["ticket"], duration_hours=data["duration_hours"],
                    actor=request.user, request_id=request.id)
            except PortalError as exc:
                _form_errors(form, exc)
            else:
                messages.success(request, f"Access request #{access_request.pk} is waiting for "
                                          "approval." if pending else
                                 f"Access request #{access_request.pk} was granted.")
                return redirect(access_request.get_absolute_url())
        return self.get(request, form=form, status=400)


def _request_facts(row) -> list[Fact]:
    """The Essentials of an access request: who gets what, where, for how long, and why."""
    approval = (reverse("approvals:request-detail", kwargs={"approval_id": row.approval_request_id})
                if row.approval_request_id else "")
    return [
        Fact("Status", row.get_status_display(), kind="status",
             tone=row.status_tone, id="request-status"),
        Fact("HSM", row.hsm.name, url=reverse("access:hsm-access", kwargs={"hsm_id": row.hsm.name})),
        Fact("Principal", row.principal_name, note="Unknown in the directory"),
        Fact("Principal object id", row.principal_id, kind="code"),
        Fact("Role", row.role_name),
        Fact("Scope", row.scope, kind="code"),
        Fact("Duration", f"{row.duration_hours} hour{'s' if row.duration_hours != 1 else ''}"),
        Fact("Requested by", row.requested_by_name),
        Fact("Requested", row.created_at, kind="time"),
        Fact("Approval", f"Approval request #{row.approval_request_id}" if approval else "",
             url=approval),
        Fact("Granted", row.granted_at, kind="time", note="Not yet"),
        Fact("Expires", row.expires_at, kind="time",
             note=f"{row.duration_hours} h after it is granted"),
        Fact("Ticket", row.ticket, note="None given"),
        Fact("Correlation id", row.correlation_id, kind="code"),
    ]


class AccessRequestDetailView(PortalPermissionMixin, View):
    required_permission = "access_app.view_accessrequest"

    def get(self, request, access_request_id):
        row = services.access_request_deny_sync(
            request=selectors.access_request_get(request_id=access_request_id))
        effective = []
        if row.scope.lower().startswith("/keys/"):
            effective = selectors.effective_access(hsm=row.hsm, key_name=row.scope.split("/", 2)[2])
        return render(request, "access_app/request_detail.html", {
            "access_request": row, "effective": effective, "facts": _request_facts(row)})


class CampaignListView(PortalPermissionMixin, View):
    required_permission = {"GET": "access_app.view_reviewcampaign",
                           "POST": "access_app.add_reviewcampaign"}

    def get(self, request, form=None, status=200):
        return render(request, "access_app/campaign_list.html", {
            "campaigns": selectors.campaigns()[:100],
            "form": form or CampaignForm(hsms=hsm_list())}, status=status)

    def post(self, request):
        form = CampaignForm(request.POST, hsms=hsm_list())
        if form.is_valid():
            data = form.cleaned_data
            try:
                campaign = services.campaign_start(
                    hsm=hsm_get_for_user(user=request.user, hsm_id=data["hsm"]), name=data["name"],
                    days=data["days"], actor=request.user, request_id=request.id)
            except PortalError as exc:
                _form_errors(form, exc)
            else:
                messages.success(request, f"Started access review {campaign.name}.")
                return redirect(campaign.get_absolute_url())
        return self.get(request, form=form, status=400)


class CampaignDetailView(PortalPermissionMixin, View):
    required_permission = "access_app.view_reviewcampaign"

    def get(self, request, campaign_id):
        campaign = selectors.campaign_get(campaign_id=campaign_id)
        items = list(selectors.campaign_items(campaign=campaign))
        names = selectors.principal_names([i.principal_id for i in items])
        for item in items:
            item.principal_name = names.get(item.principal_id.lower(), "")
            item.may_answer = (campaign.status == "open" and item.decision == "pending"
                               and services.review_may_answer(user=request.user, item=item))
        return render(request, "access_app/campaign_detail.html", {
            "campaign": campaign, "items": items, "crumb_current": campaign.name})


class CampaignEvidenceView(PortalPermissionMixin, View):
    required_permission = "access_app.view_reviewcampaign"

    def get(self, request, campaign_id):
        campaign = selectors.campaign_get(campaign_id=campaign_id)
        response = JsonResponse(selectors.campaign_evidence(campaign=campaign))
        response["Content-Disposition"] = f'attachment; filename="access-review-{campaign.pk}.json"'
        return response


class ReviewAnswerView(PortalPermissionMixin, View):
    required_permission = "access_app.view_reviewcampaign"

    def post(self, request, item_id):
        form = ReviewAnswerForm(request.POST)
        item = services.ReviewItem.objects.filter(pk=item_id).first()
        back = (reverse("access:campaign-detail", kwargs={"campaign_id": item.campaign_id})
                if item else reverse("access:campaign-list"))
        if not form.is_valid():
            messages.error(request, "Answer keep or revoke.")
            return redirect(back)
        try:
            answered = services.review_answer(item_id=item_id, actor=request.user,
                                              request_id=request.id, **form.cleaned_data)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(back)
        messages.success(request, "Kept the assignment." if answered.decision == "keep" else
                         "Sent the assignment's revocation for approval.")
        return redirect(back)
