"""The HSM registry page: every role sees the HSMs; admins add more."""
from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views import View

from portal.errors import PortalError
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_list
from portal.gateway.services import hsm_register
from portal.permissions import PortalPermissionMixin


class HsmForm(forms.Form):
    name = forms.CharField(max_length=24, help_text="short name, e.g. prod-weu")
    uri = forms.URLField(max_length=255, label="Data-plane URL", assume_scheme="https",
                         help_text="https://<name>.managedhsm.azure.net")
    arm_resource_id = forms.CharField(max_length=512, required=False, label="ARM resource id")
    region = forms.CharField(max_length=64, required=False)
    role = forms.ChoiceField(choices=HsmInstance.Role.choices)


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
            else:
                messages.success(request, f"Registered HSM {hsm.name}.")
                return redirect("gateway:hsm-list")
        return self.get(request, form=form, status=400)
