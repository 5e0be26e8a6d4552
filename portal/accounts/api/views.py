"""API tokens over the API: list them, revoke one. Issuing is `manage.py drf_create_token`."""
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.accounts.api.serializers import TokenOutput
from portal.accounts.selectors import api_token_list
from portal.accounts.services import api_token_revoke
from portal.permissions import SIGNED_IN


class TokenListApi(APIView):
    # Everyone may list their own tokens; admins see everyone's (the selector narrows).
    required_permission = SIGNED_IN

    @extend_schema(responses=TokenOutput(many=True),
                   description="Your API tokens (an admin's: everyone's), newest first.")
    def get(self, request):
        return Response(TokenOutput(api_token_list(user=request.user), many=True).data)


class TokenDetailApi(APIView):
    # The owner or an admin (the service decides; others get 404).
    required_permission = SIGNED_IN

    @extend_schema(request=None, responses={204: None},
                   description="Revoke a token at once. Its owner or an admin may.")
    def delete(self, request, token_id: int):
        api_token_revoke(token_id=token_id, actor=request.user, request_id=request.id)
        return Response(status=status.HTTP_204_NO_CONTENT)
