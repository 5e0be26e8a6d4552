"""Registered HSMs over the API."""
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.gateway.api.serializers import (HsmDeregisterInput, HsmDeregisterOutput, HsmInput,
                                            HsmOutput)
from portal.gateway.selectors import hsm_get_for_user, hsm_list
from portal.gateway.services import hsm_deregister, hsm_register


class HsmListApi(APIView):
    required_permission = {"GET": "gateway.view_hsminstance", "POST": "gateway.add_hsminstance"}

    @extend_schema(responses=HsmOutput(many=True))
    def get(self, request):
        return Response(HsmOutput(hsm_list(), many=True).data)

    @extend_schema(request=HsmInput, responses={201: HsmOutput},
                   description="Register an HSM. A name or URL already registered is a 409.")
    def post(self, request):
        data = HsmInput(data=request.data)
        data.is_valid(raise_exception=True)
        hsm = hsm_register(actor=request.user, request_id=request.id, **data.validated_data)
        return Response(HsmOutput(hsm).data, status=status.HTTP_201_CREATED)


class HsmDetailApi(APIView):
    required_permission = {"GET": "gateway.view_hsminstance",
                           "DELETE": "gateway.delete_hsminstance"}

    @extend_schema(responses=HsmOutput)
    def get(self, request, hsm_id):
        return Response(HsmOutput(hsm_get_for_user(user=request.user, hsm_id=hsm_id)).data)

    @extend_schema(request=HsmDeregisterInput, responses=HsmDeregisterOutput,
                   description="Deregister the HSM (the HSM itself is not touched): its cached "
                               "inventory goes with it; jobs that ran on it are kept without "
                               "their HSM. The body repeats the HSM's name as confirm_name. "
                               "409 while a job on it is running.")
    def delete(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        data = HsmDeregisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        removed = hsm_deregister(actor=request.user, hsm=hsm, request_id=request.id,
                                 confirm_name=data.validated_data["confirm_name"])
        return Response(HsmDeregisterOutput(removed).data)
