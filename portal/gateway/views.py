"""The HSM registry page."""
from django.shortcuts import render
from django.views import View

from portal.gateway.selectors import hsm_list
from portal.permissions import PortalPermissionMixin


class HsmListView(PortalPermissionMixin, View):
    required_permission = "gateway.view_hsminstance"

    def get(self, request):
        return render(request, "gateway/hsminstance_list.html", {"hsms": hsm_list()})
