"""The HSM registry pages: every role sees the HSMs; admins register and deregister them."""
from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.html import escape
from django.views import View

from portal.errors import PortalError
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_get_for_user, hsm_list, hsm_usage
from portal.gateway.services import hsm_deregister, hsm_register
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
        return render(request, "gateway/hsminstance_list.html",
                      {"hsms": hsm_list(), "form": form or HsmForm()}, status=status)

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
