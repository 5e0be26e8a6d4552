"""Registered HSMs over the API."""
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.gateway.api.serializers import HsmInput, HsmOutput
from portal.gateway.selectors import hsm_list
from portal.gateway.services import hsm_register


class HsmListApi(APIView):
    required_permission = {"GET": "gateway.view_hsminstance", "POST": "gateway.add_hsminstance"}

    @extend_schema(responses=HsmOutput(many=True))
    def get(self, request):
        return Response(HsmOutput(hsm_list(), many=True).data)

    @extend_schema(request=HsmInput, responses={201: HsmOutput})
    def post(self, request):
        data = HsmInput(data=request.data)
        data.is_valid(raise_exception=True)
        hsm = hsm_register(actor=request.user, request_id=request.id, **data.validated_data)
        return Response(HsmOutput(hsm).data, status=status.HTTP_201_CREATED)
