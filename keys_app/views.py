"""Key pages: inventory list, detail, and the actions (each calls one service)."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from keys_app import services
from keys_app.forms import (ConfirmForm, KeyCreateForm, KeyFilterForm, KeyImportForm,
                            KeyRestoreForm, KeyUpdateForm, RotationPolicyForm)
from keys_app.selectors import KeyFilter, inventory_state, key_activity, key_get, key_list
from keys_app.tables import deleted_key_table, key_table
from keys_app.spec import spec_from_request, standards_violations, tags_parse
from portal.downloads import attachment, csv_lines
from portal.errors import BadInput, NotFound, PortalError
from portal.gateway.selectors import hsm_get_for_user, hsm_list
from portal.permissions import PortalPermissionMixin

CSV_FIELDS = ("name", "state", "kty", "key_size", "curve", "enabled", "key_ops", "not_before",
              "expires", "created_on", "updated_on", "has_rotation_policy", "version_count",
              "tags_text", "drift_note")


def _act(request, call, success: str, fallback: str):
    """Run one service call for a POST: flash the outcome, redirect to what it returns."""
    try:
        target = call()
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect(fallback)
    messages.success(request, success)
    return redirect(target or fallback)


class KeyDefaultView(PortalPermissionMixin, View):
    required_permission = "keys_app.view_keyrecord"

    def get(self, request):
        hsm = hsm_list().first()
        if hsm is None:
            raise NotFound("No HSM is registered yet.")
        return redirect("keys:key-list", hsm_id=hsm.name)


class HsmKeyMixin(PortalPermissionMixin):
    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.hsm_id = kwargs["hsm_id"]

    @property
    def hsm(self):
        if not hasattr(self, "_hsm"):
            self._hsm = hsm_get_for_user(user=self.request.user, hsm_id=self.hsm_id)
        return self._hsm

    def page(self, template: str, context: dict | None = None, *, status: int = 200):
        """Render a page of this HSM's key tabs; the tabs show the inventory's cache age."""
        return render(self.request, template, {
            "hsm": self.hsm, "state": inventory_state(hsm=self.hsm), **(context or {})},
            status=status)

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
            tags=tags_parse(form.cleaned_data["tags"]), expires=form.cleaned_data["expires"],
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


class KeyDetailView(HsmKeyMixin, View):
    required_permission = "keys_app.view_keyrecord"

    def get(self, request, hsm_id, name):
        return key_detail_page(self, key_get(hsm=self.hsm, name=name))


def key_detail_page(view: HsmKeyMixin, record, *, policy_form=None, status: int = 200):
    """The key's page; a form sent back with errors shows what the user typed."""
    return view.page("keys_app/key_detail.html", {
        "key": record, "versions": record.versions.all()[:100],
        "activity": key_activity(hsm=view.hsm, name=record.name),
        "violations": standards_violations(record),
        "update_form": KeyUpdateForm.for_record(record),
        "policy_form": policy_form or RotationPolicyForm.for_record(record),
        "confirm_form": ConfirmForm()}, status=status)


class KeyUpdateView(HsmKeyMixin, View):
    required_permission = "keys_app.change_keyrecord"

    def post(self, request, hsm_id, name):
        form = KeyUpdateForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Please correct the attributes: " + form.errors.as_text())
            return redirect(self.detail_url(name))
        data = form.cleaned_data
        return _act(request, lambda: services.key_update(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            enabled=data["enabled"], not_before=data["not_before"], expires=data["expires"],
            key_ops=data["key_ops"] or None, tags=tags_parse(data["tags"]),
            confirm_name=data["confirm_name"]).get_absolute_url(),
            f"Updated {name}.", self.detail_url(name))


class KeyRotateView(HsmKeyMixin, View):
    required_permission = "keys_app.rotate_keyrecord"

    def post(self, request, hsm_id, name):
        return _act(request, lambda: services.key_rotate(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id
        ).get_absolute_url(), f"Rotated {name}: a new version is current.", self.detail_url(name))


class KeyRotationPolicyView(HsmKeyMixin, View):
    required_permission = "keys_app.change_keyrecord"

    def post(self, request, hsm_id, name):
        if request.POST.get("clear"):
            confirm_name = request.POST.get("confirm_name")
            return _act(request, lambda: services.key_rotation_policy_set(
                hsm=self.hsm, name=name, policy=None, confirm_name=confirm_name,
                actor=request.user, request_id=request.id).get_absolute_url(),
                f"Cleared the rotation policy of {name}.", self.detail_url(name))
        record = key_get(hsm=self.hsm, name=name)
        form = RotationPolicyForm(request.POST, record=record)
        if form.is_valid():
            policy = form.rotation_policy()
            try:
                services.key_rotation_policy_set(
                    hsm=self.hsm, name=record.name, policy=policy, actor=request.user,
                    request_id=request.id, confirm_name=form.cleaned_data["confirm_name"])
            except BadInput as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors[0])
                if not exc.fields:
                    form.add_error(None, exc.message)
            except PortalError as exc:
                messages.error(request, exc.message)
                return redirect(self.detail_url(record.name))
            else:
                messages.success(request, f"Cleared the rotation policy of {record.name}."
                                 if policy is None else f"Set the rotation policy of {record.name}.")
                return redirect(self.detail_url(record.name))
        messages.error(request, "The rotation policy was not saved: correct the marked fields.")
        return key_detail_page(self, record, policy_form=form, status=400)


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
    required_permission = "keys_app.view_keyrecord"

    def get(self, request, hsm_id, name, fmt):
        body, content_type = services.key_public(hsm=self.hsm, name=name, fmt=fmt)
        return attachment(body, content_type=content_type, filename=f"{name}.{fmt}")


class KeyDeleteView(HsmKeyMixin, View):
    required_permission = "keys_app.delete_keyrecord"

    def post(self, request, hsm_id, name):
        return _act(request, lambda: services.key_delete(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            confirm_name=request.POST.get("confirm_name")) and
            reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id}),
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
        return _act(request, lambda: services.key_purge(
            hsm=self.hsm, name=name, actor=request.user, request_id=request.id,
            confirm_name=request.POST.get("confirm_name")) or
            reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id}),
            f"Purged {name} permanently.", reverse("keys:deleted-list", kwargs={"hsm_id": hsm_id}))
