"""The HSM registry pages: every role sees the HSMs; admins register and deregister them."""
import re

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views import View

from portal.errors import PortalError
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_get_for_user, hsm_list, hsm_summary, hsm_usage
from portal.gateway.services import hsm_deregister, hsm_register, hsm_settings_list
from portal.gateway.tables import hsm_table
from portal.objects import Fact, Tab, object_tabs
from portal.permissions import PortalPermissionMixin


class HsmForm(forms.Form):
    name = forms.CharField(max_length=24, help_text="short name, e.g. prod-weu")
    # A CharField: the registry's own rule (endpoints.hsm_url_checked) says what is wrong
    # with a URL in one sentence, which URLField's "Enter a valid URL." does not.
    uri = forms.CharField(max_length=255, label="Data-plane URL")
    arm_resource_id = forms.CharField(max_length=512, required=False, label="ARM resource id")
    region = forms.CharField(max_length=64, required=False)
    role = forms.ChoiceField(choices=HsmInstance.Role.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Django's form templates print help text unescaped: <name> must be escaped here.
        suffix = settings.AZURE_HSM_DNS_SUFFIX.strip(".")
        self.fields["uri"].help_text = escape(f"https://<name>.{suffix}")

    def clean_uri(self) -> str:
        uri = self.cleaned_data["uri"].strip()
        return uri if "://" in uri else f"https://{uri}"


class HsmDeregisterForm(forms.Form):
    confirm_name = forms.CharField(max_length=24, label="Type the HSM's name to confirm")


class HsmListView(PortalPermissionMixin, View):
    required_permission = {"GET": "gateway.view_hsminstance", "POST": "gateway.add_hsminstance"}

    def get(self, request, form=None, status=200):
        return render(request, "gateway/hsminstance_list.html", {
            "hsms": hsm_list(), "table": hsm_table(request=request, hsms=hsm_list()),
            "form": form or HsmForm()}, status=status)

    def post(self, request):
        form = HsmForm(request.POST)
        if form.is_valid():
            try:
                hsm = hsm_register(actor=request.user, request_id=request.id, **form.cleaned_data)
            except PortalError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors)
                messages.error(request, exc.message)
                return self.get(request, form=form, status=exc.status)
            messages.success(request, f"Registered HSM {hsm.name}.")
            return redirect("gateway:hsm-list")
        return self.get(request, form=form, status=400)


class HsmDeregisterView(PortalPermissionMixin, View):
    required_permission = "gateway.delete_hsminstance"

    def get(self, request, hsm_id: str, form=None, status=200):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return render(request, "gateway/hsminstance_deregister.html",
                      {"hsm": hsm, "usage": hsm_usage(hsm=hsm),
                       "form": form or HsmDeregisterForm()}, status=status)

    def post(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = HsmDeregisterForm(request.POST)
        if not form.is_valid():
            return self.get(request, hsm_id, form=form, status=400)
        try:
            hsm_deregister(actor=request.user, hsm=hsm, request_id=request.id,
                           confirm_name=form.cleaned_data["confirm_name"])
        except PortalError as exc:
            for field, errors in exc.fields.items():
                form.add_error(field if field in form.fields else None, errors)
            messages.error(request, exc.message)
            return self.get(request, hsm_id, form=form, status=exc.status)
        messages.success(request, f"Deregistered HSM {hsm.name}; its cached keys were removed.")
        return redirect("gateway:hsm-list")


# The HSM's tabs, one URL each; one line adds a tab. Keys and Deleted keys are the key
# pages of this HSM (keys_app), named here by URL only: portal never imports that app.
HSM_TABS = [
    Tab("overview", "Overview", "gateway:hsm-detail"),
    Tab("keys", "Keys", "keys:key-list", "keys_app.view_keyrecord"),
    Tab("deleted", "Deleted keys", "keys:deleted-list", "keys_app.view_keyrecord"),
    Tab("settings", "Settings", "gateway:hsm-settings"),
    Tab("jobs", "Jobs", "gateway:hsm-jobs", "jobs.view_job"),
    Tab("activity", "Activity", "gateway:hsm-activity", "audit.view_auditevent"),
]


def hsm_tabs(*, user, hsm: HsmInstance, current: str) -> list[dict]:
    """The HSM's tabs for this user, the current one marked (also used by the key pages)."""
    return object_tabs(user=user, tabs=HSM_TABS, current=current, hsm_id=hsm.name)


def hsm_facts(hsm: HsmInstance) -> list[Fact]:
    """The HSM's Essentials: where it is and what it is, then what the apps add (keys)."""
    return [
        Fact("Name", hsm.name, kind="code"),
        Fact("Role", hsm.get_role_display()),
        Fact("Region", hsm.region),
        Fact("Data-plane URL", hsm.uri, kind="code"),
        Fact("ARM resource id", hsm.arm_resource_id, kind="code"),
        Fact("Registered", hsm.created, kind="time"),
        *hsm_summary(hsm=hsm),
    ]


class HsmObjectMixin(PortalPermissionMixin):
    """A page under one HSM (`hsm_id` in its URL): `self.hsm_id`, and `self.hsm`, the
    registered HSM this user may see, looked up once when first used."""

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.hsm_id = kwargs["hsm_id"]

    @property
    def hsm(self) -> HsmInstance:
        if not hasattr(self, "_hsm"):
            self._hsm = hsm_get_for_user(user=self.request.user, hsm_id=self.hsm_id)
        return self._hsm


class HsmTabView(PortalPermissionMixin, View):
    """One tab of an HSM's page: title, Essentials, tabs, then the tab's content."""

    required_permission = "gateway.view_hsminstance"
    tab = "overview"
    template = "gateway/hsminstance_detail.html"

    def get(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return render(request, self.template, {
            "hsm": hsm, "tab": self.tab, "facts": hsm_facts(hsm),
            "tabs": hsm_tabs(user=request.user, hsm=hsm, current=self.tab),
            **self.tab_context(hsm)})

    def tab_context(self, hsm: HsmInstance) -> dict:
        return {}


class HsmDetailView(HsmTabView):
    tab = "overview"

    def tab_context(self, hsm):
        from portal.jobs.models import Job

        return {"jobs": Job.objects.filter(hsm=hsm).order_by("-created", "-id")[:5]}


class HsmSettingsView(HsmTabView):
    tab = "settings"
    template = "gateway/hsminstance_settings.html"

    def tab_context(self, hsm):
        try:
            return {"hsm_settings": hsm_settings_list(hsm=hsm), "usage": hsm_usage(hsm=hsm)}
        except PortalError as exc:
            return {"settings_error": exc.message, "usage": hsm_usage(hsm=hsm)}


class HsmJobsView(HsmTabView):
    required_permission = "jobs.view_job"
    tab = "jobs"
    template = "gateway/hsminstance_jobs.html"

    def tab_context(self, hsm):
        from portal.jobs.models import Job

        return {"jobs": Job.objects.filter(hsm=hsm).order_by("-created", "-id")[:100]}


class HsmActivityView(HsmTabView):
    required_permission = "audit.view_auditevent"
    tab = "activity"
    template = "gateway/hsminstance_activity.html"

    def tab_context(self, hsm):
        from django.db.models import Q

        from portal.audit.selectors import AuditFilter, audit_event_queryset

        # The HSM itself and everything on it (its keys, its role assignments); not another
        # HSM whose name merely starts with this one's.
        rows = list(audit_event_queryset(filters=AuditFilter()).filter(
            Q(target=f"hsm:{hsm.name}") | Q(target__startswith=f"hsm:{hsm.name}/"))[:100])
        for row in rows:  # a key's id links to its page
            key = re.fullmatch(r"hsm:[^/]+/key:([0-9A-Za-z-]{1,127})", row.target)
            row.target_url = reverse("keys:key-detail", kwargs={
                "hsm_id": hsm.name, "name": key[1]}) if key else ""
        return {"activity": rows}
