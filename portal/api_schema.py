"""The OpenAPI schema's shared parts: the error envelope on every operation."""
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorBody(serializers.Serializer):
    code = serializers.CharField(help_text="stable machine-readable code, e.g. bad_input")
    message = serializers.CharField(help_text="a sentence for people; no SDK codes or URLs")
    request_id = serializers.CharField(help_text="quote it when asking for help")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="bad input only: field name -> list of sentences; nested fields are "
                  "dotted (tags.env, key_ops.1); errors of the whole request are under "
                  "non_field_errors")


class ErrorOutput(serializers.Serializer):
    error = ErrorBody()


# Every operation may answer these; 409 and 413 only where a body is read.
_ALWAYS = {"400": "Bad input: a sentence, and one per field in fields.",
           "401": "Not signed in, or the token is not valid; step_up_required: the operation "
                  "needs a recent sign-in (PORTAL_STEP_UP_SECONDS) in a browser session.",
           "403": "Signed in without the permission this needs.",
           "405": "The path does not take that method (see the Allow header).",
           "503": "The HSM, the audit trail or the task queue is unavailable."}
_WITH_INPUT = {"409": "Conflicts with the current state (e.g. the name is taken).",
               "413": "The request body is larger than the portal accepts."}


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the error envelope for each status an operation can get."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        extra = dict(_ALWAYS)
        extra["404"] = "No such object (or the HSM does not exist)."
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            extra.update(_WITH_INPUT)
        for status, description in extra.items():
            if status not in responses:
                response = self._get_response_for_code(ErrorOutput, status)
                response["description"] = description
                responses[status] = response
        return responses
