"""Key pages: inventory list, detail, and the actions (each calls one service)."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from keys_app import services
from keys_app.forms import (DURATION_UNITS, ConfirmForm, KeyCreateForm, KeyFilterForm,
                            KeyImportForm, KeyRestoreForm, KeyUpdateForm, RotationPolicyForm,
                            duration_parts)
from keys_app.selectors import KeyFilter, inventory_state, key_activity, key_get, key_list
from keys_app.tables import deleted_key_table, key_table
from keys_app.spec import spec_from_request, standards_violations
from portal.accounts.stepup import ensure_recent_sign_in
from portal.approvals.models import ApprovalRequest
from portal.approvals.responses import page_act, page_pending
from portal.downloads import attachment, csv_lines
from portal.errors import BadInput, NotFound, PortalError
from portal.gateway.selectors import hsm_list
from portal.gateway.views import HsmObjectMixin
from portal.objects import Fact, Tab, object_tabs
from portal.permissions import PortalPermissionMixin

CSV_FIELDS = ("name", "state", "kty", "key_size", "curve", "enabled", "key_ops", "not_before",
              "expires", "created_on", "updated_on", "has_rotation_policy", "version_count",
              "tags_text", "drift_note")


def _act(request, call, success: str, fallback: str):
    """Run one service call for a POST: flash the outcome, redirect to what it returns (a
    pending approval request: to its page, saying it waits for approval)."""
    return page_act(request, call, success=success, fallback=fallback, follow=True)


def _then(result, url: str):
    """A service's pending approval request, or where to go after it acted."""
    return result if isinstance(result, ApprovalRequest) else url


def _reason(request) -> dict:
    """The justification and ticket typed with a dangerous action (for its approvers)."""
    return {"justification": request.POST.get("justification", ""),
            "ticket": request.POST.get("ticket", "")}


class KeyDefaultView(PortalPermissionMixin, View):
    required_permission = "keys_app.view_keyrecord"

    def get(self, request):
        hsm = hsm_list().first()
        if hsm is None:
            raise NotFound("No HSM is registered yet.")
        return redirect("keys:key-list", hsm_id=hsm.name)


class HsmKeyMixin(HsmObjectMixin):
    def page(self, template: str, context: dict | None = None, *, status: int = 200):
        """Render a page of this HSM's key tabs; the tabs show the inventory's cache age."""
        from portal.gateway.views import hsm_tabs

        current = "deleted" if self.request.resolver_match.url_name == "deleted-list" else "keys"
        return render(self.request, template, {
            "hsm": self.hsm, "state": inventory_state(hsm=self.hsm),
            "hsm_tabs": hsm_tabs(user=self.request.user, hsm=self.hsm, current=current),
            **(context or {})}, status=status)

    def list_url(self) -> str:
        return reverse("keys:key-list", kwargs={"hsm_id": self.hsm_id})

    def detail_url(self, name: str) -> str:
        return reverse("keys:key-detail", kwargs={"hsm_id": self.hsm_id, "name": name})


class KeyListView(HsmKeyMixin, View):
    required_permission = "keys_app.view_keyrecord"

    def get(self, request, hsm_id):
        form = KeyFilterForm(request.GET)
        if not form.is_valid():
            # The list page with the filter and its errors, and no keys: an unfiltered list
            # would pass for the answer to the filter that was asked for.
            return self.page("keys_app/key_list.html", {"hsms": hsm_list(), "form": form,
                                                        "table": None, "filtered": True},
                             status=400)
        filters = form.to_filter()
        keys = key_list(hsm=self.hsm, filters=filters)
        if request.GET.get("export") == "csv":
            return keys_csv_response(keys, f"keys-{self.hsm.name}.csv")
        filtered = filters != KeyFilter(sort=filters.sort)
        table = key_table(request=request, hsm=self.hsm, keys=keys, sort=filters.sort,
                          filtered=filtered)
        query = request.GET.copy()
        for name in ("page", "after"):
            query.pop(name, None)
        return self.page("keys_app/key_list.html", {
            "hsms": hsm_list(), "form": form, "table": table, "filtered": filtered,
            "query": query.urlencode()})


def keys_csv_response(keys, filename: str):
    """The key list as a streamed, spreadsheet-safe CSV download (both doors)."""
    rows = ([getattr(key, name) for name in CSV_FIELDS] for key in keys.iterator(chunk_size=1000))
    return attachment(csv_lines(CSV_FIELDS, rows), content_type="text/csv; charset=utf-8",
                      filename=filename)


class KeySyncView(HsmKeyMixin, View):
    required_permission = "keys_app.sync_keyrecord"

    def post(self, request, hsm_id):
        return _act(request, lambda: services.inventory_sync_start(
            hsm=self.hsm, actor=request.user, request_id=request.id,
            full=request.POST.get("full") == "1").get_absolute_url(),
            "Inventory refresh queued.", self.list_url())


class KeyCreateView(HsmKeyMixin, View):
    required_permission = {"GET": "keys_app.add_keyrecord", "POST": "keys_app.add_keyrecord"}

    def get(self, request, hsm_id):
        return self.page("keys_app/key_create.html",
                         {"form": KeyCreateForm(initial={"preset": "cmk-wrapping"})})

    def post(self, request, hsm_id):
        form = KeyCreateForm(request.POST)
        if form.is_valid():
            try:
                record = services.key_create(hsm=self.hsm, spec=spec_from_request(form.request_data()),
                                             actor=request.user, request_id=request.id)
            except PortalError as exc:
                for field, errors in exc.fields.items():
                    for error in errors if isinstance(errors, list) else [errors]:
                        form.add_error(field if field in form.fields else None, str(error))
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Created {record.name}.")
                return redirect(self.detail_url(record.name))
        return self.page("keys_app/key_create.html", {"form": form}, status=400)


class KeyImportView(HsmKeyMixin, View):
    required_permission = "keys_app.add_keyrecord"

    def get(self, request, hsm_id):
        return self.page("keys_app/key_import.html", {"form": KeyImportForm(),
                                                      "restore_form": KeyRestoreForm()})

    def post(self, request, hsm_id):
        form = KeyImportForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.page("keys_app/key_import.html", {
                "form": form, "restore_form": KeyRestoreForm()}, status=400)
        return _act(request, lambda: services.key_import(
            hsm=self.hsm, name=form.cleaned_data["name"], jwk=form.jwk(),
            tags=form.cleaned_data["tags"], expires=form.cleaned_data["expires"],
            actor=request.user, request_id=request.id).get_absolute_url(),
            "Imported the key.", reverse("keys:key-import", kwargs={"hsm_id": hsm_id}))


class KeyRestoreView(HsmKeyMixin, View):
    required_permission = "keys_app.backup_keyrecord"

    def post(self, request, hsm_id):
        form = KeyRestoreForm(request.POST, request.FILES)
        if not form.is_valid():
            messages.error(request, "Choose a key backup file.")
            return redirect("keys:key-import", hsm_id=hsm_id)
        blob = form.cleaned_data["backup_file"].read(1024 * 1024 + 1)
        return _act(request, lambda: services.key_restore(
            hsm=self.hsm, blob=blob, actor=request.user, request_id=request.id
        ).get_absolute_url(), "Restored the key from its backup.",
            reverse("keys:key-import", kwargs={"hsm_id": hsm_id}))


# The key's tabs, one URL each; one line here adds a tab (its view renders a template that
# extends keys_app/key_base.html). Access and Usage come with the work that fills them.
KEY_TABS = [
    Tab("overview", "Overview", "keys:key-detail"),
    Tab("versions", "Versions", "keys:key-versions"),
    Tab("rotation", "Rotation", "keys:key-rotation"),
    Tab("activity", "Activity", "keys:key-activity"),
]
TAB_TEMPLATES = {"overview": "keys_app/key_detail.html", "versions": "keys_app/key_versions.html",
                 "rotation": "keys_app/key_rotation.html", "activity": "keys_app/key_activity.html"}


def rotation_words(policy: dict | None) -> str:
    """A rotation policy in people's words: "Rotate 30 days before expiry; expires after 2 years"."""
    if not policy:
        return "none"
    parts = []
    for action in policy.get("lifetime_actions") or []:
        verb = "Rotate" if action["action"] == "Rotate" else "Notify"
        if action.get("time_after_create"):
            parts.append(f"{verb} {duration_words(action['time_after_create'])} after creation")
        else:
            parts.append(f"{verb} {duration_words(action['time_before_expiry'])} before expiry")
    if policy.get("expires_after"):
        parts.append(f"new versions expire after {duration_words(policy['expires_after'])}")
    return "; ".join(parts) or "none"


def duration_words(value: str) -> str:
    """P30D -> "30 days", P1Y -> "1 year"; other ISO-8601 durations as they are."""
    number, unit = duration_parts(value)
    if unit not in DURATION_UNITS:
        return value
    label = DURATION_UNITS[unit][0]
    return f"{number} {label[:-1] if number == '1' else label}"


def key_facts(hsm, record) -> list[Fact]:
    """The key's Essentials: what people check first, two columns in the panel."""
    if record.state == "deleted":
        status = Fact("Status", "Deleted", kind="status", tone="bad")
    elif record.expired:
        status = Fact("Status", "Expired", kind="status", tone="bad")
    elif not record.enabled:
        status = Fact("Status", "Disabled", kind="status", tone="muted")
    else:
        status = Fact("Status", "Enabled", kind="status", tone="ok")
    kind = " ".join(str(part) for part in (record.kty, record.key_size or "", record.curve) if part)
    facts = [
        status,
        Fact("Type", kind),
        Fact("Operations", ", ".join(record.key_ops or []) or "—"),
        Fact("Current version", record.version, kind="code", id="current-version",
             url=reverse("keys:key-versions", kwargs={"hsm_id": hsm.name, "name": record.name})),
        Fact("Key identifier", f"{hsm.uri.rstrip('/')}/keys/{record.name}/{record.version}"
             if record.version else "", kind="code"),
        Fact("HSM", hsm.name, url=reverse("gateway:hsm-detail", kwargs={"hsm_id": hsm.name})),
        Fact("Activation", record.not_before, kind="time", note="Active from creation"),
        Fact("Expiry", record.expires, kind="time", note="Never expires"),
        Fact("Automatic rotation", rotation_words(record.rotation_policy)
             if record.has_rotation_policy else "No" if not record.rotation_policy
             else "No (" + rotation_words(record.rotation_policy) + ")"),
        Fact("Created", record.created_on, kind="time"),
        Fact("Updated", record.updated_on, kind="time"),
        Fact("Tags", record.tags or {}, kind="tags"),
    ]
    if record.state == "deleted":
        facts.insert(6, Fact("Purge date", record.scheduled_purge_on, kind="time"))
    else:
        days = f" ({record.recoverable_days} days after deletion)" if record.recoverable_days else ""
        facts.append(Fact("Recovery", f"{record.recovery_level or '—'}{days}"))
    return facts


def key_page(view: HsmKeyMixin, record, tab: str, context: dict | None = None, *,
             status: int = 200):
    """One tab of a key's page: the title, command bar, Essentials and tabs, then the tab."""
    return view.page(TAB_TEMPLATES[tab], {
        "key": record, "tab": tab, "facts": key_facts(view.hsm, record),
        "rotation_text": rotation_words(record.rotation_policy),
        "violations": standards_violations(record) if record.state == "active" else [],
        "tabs": object_tabs(user=view.request.user, tabs=KEY_TABS, current=tab,
                            hsm_id=view.hsm.name, name=record.name),
        **(context or {})}, status=status)


class KeyTabView(HsmKeyMixin, View):
    """A read-only tab of a key's page."""

    required_permission = "keys_app.view_keyrecord"
    tab = "overview"

    def get(self, request, hsm_id, name):
        record = key_get(hsm=self.hsm, name=name)
        return key_page(self, record, self.tab, self.tab_context(record))

    def tab_context(self, record) -> dict:
        return {}


class KeyDetailView(KeyTabView):
    tab = "overview"

    def tab_context(self, record) -> dict:
        return {"update_form": KeyUpdateForm.for_record(record),
                "recent": key_activity(hsm=self.hsm, name=record.name, limit=5)}


class KeyVersionsView(KeyTabView):
    tab = "versions"

    def tab_context(self, record) -> dict:
        return {"versions": record.versions.order_by("-created_on", "-version")[:100]}


class KeyRotationView(KeyTabView):
    tab = "rotation"

    def tab_context(self, record) -> dict:
        return {"policy_form": RotationPolicyForm.for_record(record)}


class KeyActivityView(KeyTabView):
    tab = "activity"

    def tab_context(self, record) -> dict:
        return {"activity": key_activity(hsm=self.hsm, name=record.name)}


class KeyUpdateView(HsmKeyMixin, View):
    required_permission = "keys_app.change_keyrecord"

    def post(self, request, hsm_id, name):
        form = KeyUpdateForm(request.POST)
        if not form.is_valid():
            messages.error(request, "The changes were not saved: " + " ".join(
                f"{form.fields[field].label if field in form.fields else ''}: {' '.join(errors)}"
                for field, errors in form.errors.items()).strip(": "))
            return redirect(self.detail_url(name))
        data = form.cleaned_data
        return _act(request, lambda: _then(services.key_update(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            enabled=data["enabled"], not_before=data["not_before"], expires=data["expires"],
            key_ops=data["key_ops"] or None, tags=data["tags"],
            confirm_name=data["confirm_name"]), self.detail_url(name)),
            f"Updated {name}.", self.detail_url(name))


class KeyEnableView(HsmKeyMixin, View):
    """Enable (or, with the typed name, disable) the key: its current version."""

    required_permission = "keys_app.change_keyrecord"
    enabled = True

    def post(self, request, hsm_id, name):
        return _act(request, lambda: _then(services.key_update(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            enabled=self.enabled, confirm_name=request.POST.get("confirm_name"),
            **_reason(request)), self.detail_url(name)),
            f"{'Enabled' if self.enabled else 'Disabled'} {name}.", self.detail_url(name))


class KeyDisableView(KeyEnableView):
    enabled = False


class KeyVersionEnableView(HsmKeyMixin, View):
    """Enable one version of a key (a POST from the Versions tab)."""

    required_permission = "keys_app.change_keyrecord"

    def versions_url(self, name: str) -> str:
        return reverse("keys:key-versions", kwargs={"hsm_id": self.hsm_id, "name": name})

    def post(self, request, hsm_id, name, version):
        return _act(request, lambda: services.key_version_enabled_set(
            hsm=self.hsm, name=name, version=version, enabled=True, actor=request.user,
            request_id=request.id) and self.versions_url(name),
            f"Enabled version {version} of {name}.", self.versions_url(name))


class KeyVersionDisableView(KeyVersionEnableView):
    """Disable one version of a key: a page that says what it affects, then the typed name."""

    def get(self, request, hsm_id, name, version, form=None, status=200):
        record = key_get(hsm=self.hsm, name=name)
        row = record.versions.filter(version=version).first()
        if row is None:
            raise NotFound(f"{record.name} has no version {version} in the inventory.")
        return self.page("keys_app/key_version_disable.html", {
            "key": record, "version": row, "form": form or ConfirmForm()}, status=status)

    def post(self, request, hsm_id, name, version):
        confirm_name = request.POST.get("confirm_name")
        try:
            record = services.key_version_enabled_set(
                hsm=self.hsm, name=name, version=version, enabled=False,
                confirm_name=confirm_name, actor=request.user, request_id=request.id)
        except BadInput as exc:
            form = ConfirmForm(request.POST)
            form.is_valid()
            if "confirm_name" in exc.fields:
                form.add_error("confirm_name", exc.fields["confirm_name"][0])
            else:
                form.add_error(None, exc.message)
            return self.get(request, hsm_id, name, version, form=form, status=400)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(self.versions_url(name))
        messages.success(request, f"Disabled version {version} of {record.name}.")
        return redirect(self.versions_url(record.name))


class KeyRotateView(HsmKeyMixin, View):
    required_permission = "keys_app.rotate_keyrecord"

    def post(self, request, hsm_id, name):
        return _act(request, lambda: services.key_rotate(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id
        ) and reverse("keys:key-versions", kwargs={"hsm_id": hsm_id, "name": name}),
            f"Rotated {name}: a new version is current.", self.detail_url(name))


class KeyRotationPolicyView(HsmKeyMixin, View):
    required_permission = "keys_app.change_keyrecord"

    def rotation_url(self, name: str) -> str:
        return reverse("keys:key-rotation", kwargs={"hsm_id": self.hsm_id, "name": name})

    def post(self, request, hsm_id, name):
        if request.POST.get("clear"):
            confirm_name = request.POST.get("confirm_name")
            return _act(request, lambda: _then(services.key_rotation_policy_set(
                hsm=self.hsm, name=name, policy=None, confirm_name=confirm_name,
                actor=request.user, request_id=request.id, **_reason(request)),
                self.rotation_url(name)),
                f"Cleared the rotation policy of {name}.", self.rotation_url(name))
        record = key_get(hsm=self.hsm, name=name)
        form = RotationPolicyForm(request.POST, record=record)
        if form.is_valid():
            policy = form.rotation_policy()
            try:
                result = services.key_rotation_policy_set(
                    hsm=self.hsm, name=record.name, policy=policy, actor=request.user,
                    request_id=request.id, confirm_name=form.cleaned_data["confirm_name"],
                    **_reason(request))
            except BadInput as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors[0])
                if not exc.fields:
                    form.add_error(None, exc.message)
            except PortalError as exc:
                messages.error(request, exc.message)
                return redirect(self.rotation_url(record.name))
            else:
                if isinstance(result, ApprovalRequest):  # clearing it needs approval
                    return page_pending(request, result)
                messages.success(request, f"Cleared the rotation policy of {record.name}."
                                 if policy is None else f"Set the rotation policy of {record.name}.")
                return redirect(self.rotation_url(record.name))
        messages.error(request, "The rotation policy was not saved: correct the marked fields.")
        return key_page(self, record, "rotation", {"policy_form": form}, status=400)


class KeyBackupView(HsmKeyMixin, View):
    required_permission = "keys_app.backup_keyrecord"

    def post(self, request, hsm_id, name):
        try:
            blob = services.key_backup(hsm=self.hsm, name=name, actor=request.user,
                                       request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(self.detail_url(name))
        return attachment(blob, content_type="application/octet-stream",
                          filename=f"{self.hsm.name}-{name}.keybackup")


class KeyPublicView(HsmKeyMixin, View):
    """The public key (JWK or PEM) of the current version, or of the version in the URL."""

    required_permission = "keys_app.view_keyrecord"

    def get(self, request, hsm_id, name, fmt, version=None):
        body, content_type = services.key_public(hsm=self.hsm, name=name, fmt=fmt,
                                                 version=version)
        suffix = f"-{version}" if version else ""
        return attachment(body, content_type=content_type, filename=f"{name}{suffix}.{fmt}")


class KeyDeleteView(HsmKeyMixin, View):
    required_permission = "keys_app.delete_keyrecord"

    def post(self, request, hsm_id, name):
        return _act(request, lambda: _then(services.key_delete(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            confirm_name=request.POST.get("confirm_name"), **_reason(request)),
            reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id})),
            f"Deleted {name}; it can be recovered until its purge date.", self.detail_url(name))


class DeletedKeyListView(HsmKeyMixin, View):
    required_permission = "keys_app.view_keyrecord"

    def get(self, request, hsm_id):
        keys = key_list(hsm=self.hsm, filters=KeyFilter(state="deleted", sort="name"))
        return self.page("keys_app/deleted_key_list.html", {
            "table": deleted_key_table(request=request, hsm=self.hsm, keys=keys)})


class KeyRecoverView(HsmKeyMixin, View):
    required_permission = "keys_app.delete_keyrecord"

    def post(self, request, hsm_id, name):
        return _act(request, lambda: services.key_recover(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id
        ).get_absolute_url(), f"Recovered {name}.",
            reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id}))


class KeyPurgeView(HsmKeyMixin, View):
    required_permission = "keys_app.purge_keyrecord"

    def post(self, request, hsm_id, name):
        # Outside _act: the step-up goes to re-authenticate instead of a flash message.
        ensure_recent_sign_in(request, operation="key.purge")
        return _act(request, lambda: _then(services.key_purge(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            confirm_name=request.POST.get("confirm_name"), **_reason(request)),
            reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id})),
            f"Purged {name} permanently.", reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id}))
