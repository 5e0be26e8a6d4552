"""What every app's REST API views share: validated input, and views under one HSM."""
from rest_framework.views import APIView

from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_get_for_user


def api_input(serializer_class, request) -> dict:
    """The request body validated by the serializer (a 400 with one sentence per field if not)."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


class HsmApi(APIView):
    """An API view under one HSM (`hsm_id` in its path)."""

    def hsm(self, request, hsm_id) -> HsmInstance:
        """The registered HSM by its short name, or NotFound."""
        return hsm_get_for_user(user=request.user, hsm_id=hsm_id)
