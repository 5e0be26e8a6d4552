"""CMK bindings and the HSM's Azure resource over the API: the same services as the pages."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from cmk_app import selectors, services
from cmk_app.api.serializers import (AttachInput, CmkBindingOutput, HsmResourceOutput,
                                     NetworkInput, PrivateEndpointInput,
                                     PrivateEndpointOutput, ReasonInput, RegionInput)
from portal.api import api_input
from portal.approvals.api.serializers import ApprovalPendingOutput
from portal.approvals.responses import api_outcome
from portal.gateway import arm
from portal.gateway.selectors import hsm_get_for_user
from portal.jobs.api.serializers import JobOutput


class CmkBindingListApi(APIView):
    required_permission = {"GET": "cmk_app.view_cmkbinding", "POST": "cmk_app.attach_cmkbinding"}

    @extend_schema(parameters=[OpenApiParameter("hsm", OpenApiTypes.STR, required=False),
                               OpenApiParameter("key", OpenApiTypes.STR, required=False),
                               OpenApiParameter("all", OpenApiTypes.BOOL, required=False)],
                   responses=CmkBindingOutput(many=True),
                   description="Which resources use which HSM key, and the version each uses "
                               "(kept current by the usage scan).")
    def get(self, request):
        hsm = request.query_params.get("hsm")
        rows = selectors.binding_list(
            hsm=hsm_get_for_user(user=request.user, hsm_id=hsm) if hsm else None,
            key_name=request.query_params.get("key", "")[:127],
            include_detached=request.query_params.get("all") in ("1", "true"))
        return Response(CmkBindingOutput(rows[:1000], many=True).data)

    @extend_schema(request=AttachInput, responses={202: JobOutput},
                   description="Start the attach wizard (a job: follow it at /api/v1/jobs/{id}/)."
                               " Switching a resource from another key answers 202 with a "
                               "pending approval request (cmk.switch) instead.")
    def post(self, request):
        data = api_input(AttachInput, request)
        hsm = hsm_get_for_user(user=request.user, hsm_id=data.pop("hsm"))
        result = services.cmk_attach_start(hsm=hsm, actor=request.user, request_id=request.id,
                                           **data)
        return api_outcome(result, JobOutput, status_code=status.HTTP_202_ACCEPTED)


class CmkBindingDetailApi(APIView):
    required_permission = "cmk_app.view_cmkbinding"

    @extend_schema(responses=CmkBindingOutput)
    def get(self, request, binding_id: int):
        return Response(CmkBindingOutput(selectors.binding_get(binding_id=binding_id)).data)


class CmkBindingDetachApi(APIView):
    required_permission = "cmk_app.attach_cmkbinding"

    @extend_schema(request=ReasonInput, responses={200: CmkBindingOutput,
                                                   202: ApprovalPendingOutput},
                   description="Detach (back to Microsoft-managed keys): needs approval "
                               "(cmk.detach); the answer is the pending request.")
    def post(self, request, binding_id: int):
        data = api_input(ReasonInput, request)
        result = services.cmk_detach(binding_id=binding_id, actor=request.user,
                                     request_id=request.id, **data)
        return api_outcome(result, CmkBindingOutput)


class HsmResourceApi(APIView):
    required_permission = {"GET": "cmk_app.view_hsmresource",
                           "PATCH": "cmk_app.change_hsmresource"}

    @extend_schema(responses=HsmResourceOutput,
                   description="The HSM's management-plane properties, read from Azure now.")
    def get(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return Response(HsmResourceOutput(arm.hsm_resource_get(hsm)).data)

    @extend_schema(request=NetworkInput, responses={200: HsmResourceOutput,
                                                    202: ApprovalPendingOutput},
                   description="Turn public network access on or off: needs approval "
                               "(hsm.public_network_access).")
    def patch(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        data = api_input(NetworkInput, request)
        result = services.hsm_network_access_set(
            hsm=hsm, enabled=data["public_network_access"] == "Enabled", actor=request.user,
            request_id=request.id, justification=data["justification"], ticket=data["ticket"])
        return api_outcome(result, HsmResourceOutput)


class HsmPrivateEndpointApi(APIView):
    required_permission = "cmk_app.change_hsmresource"

    @extend_schema(request=PrivateEndpointInput, responses={200: PrivateEndpointOutput,
                                                            202: ApprovalPendingOutput},
                   description="Approve or reject a private endpoint connection: needs "
                               "approval (hsm.private_endpoint).")
    def post(self, request, hsm_id, name):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        data = api_input(PrivateEndpointInput, request)
        result = services.hsm_private_endpoint_decide(hsm=hsm, name=name[:200], actor=request.user,
                                                      request_id=request.id, **data)
        return api_outcome(result, PrivateEndpointOutput)


class HsmReplicaListApi(APIView):
    required_permission = "cmk_app.change_hsmresource"

    @extend_schema(request=RegionInput, responses={202: HsmResourceOutput},
                   description="Add a replica in a secondary region (provisioning continues "
                               "in Azure; its state shows in regions).")
    def post(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        data = api_input(RegionInput, request)
        result = services.hsm_replica_add(hsm=hsm, region=data["region"], actor=request.user,
                                          request_id=request.id)
        return Response(HsmResourceOutput(result).data, status=status.HTTP_202_ACCEPTED)


class HsmReplicaDetailApi(APIView):
    required_permission = "cmk_app.change_hsmresource"

    @extend_schema(request=None, responses={202: HsmResourceOutput},
                   description="Remove the replica in a region.")
    def delete(self, request, hsm_id, region):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        result = services.hsm_replica_remove(hsm=hsm, region=region[:40], actor=request.user,
                                             request_id=request.id)
        return Response(HsmResourceOutput(result).data, status=status.HTTP_202_ACCEPTED)


class HsmPurgeProtectionApi(APIView):
    required_permission = "cmk_app.change_hsmresource"

    @extend_schema(request=ReasonInput, responses={200: HsmResourceOutput,
                                                   202: ApprovalPendingOutput},
                   description="Turn on purge protection (never off again): needs approval "
                               "(hsm.purge_protection).")
    def post(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        data = api_input(ReasonInput, request)
        result = services.hsm_purge_protection_enable(hsm=hsm, actor=request.user,
                                                      request_id=request.id, **data)
        return api_outcome(result, HsmResourceOutput)
