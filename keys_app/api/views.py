"""Keys over the API: the same services as the pages, per the map in DESIGN.md."""
import base64
import binascii

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from keys_app import services
from keys_app.api.serializers import (BackupIO, ConfirmInput, KeyCreateInput, KeyDetailOutput,
                                      KeyOutput, KeyUpdateInput, RotationPolicyIO)
from keys_app.forms import KeyFilterForm
from keys_app.selectors import KeyFilter, key_get, key_list
from keys_app.spec import spec_from_request, standards_violations
from keys_app.views import keys_csv_response
from portal.accounts.stepup import ensure_recent_sign_in
from portal.api import HsmApi
from portal.approvals.api.serializers import ApprovalPendingOutput
from portal.approvals.responses import api_outcome, api_pending
from portal.errors import BadInput
from portal.jobs.api.serializers import JobOutput

_FILTERS = [OpenApiParameter(name, OpenApiTypes.STR, required=False)
            for name in KeyFilterForm.base_fields] + [
    OpenApiParameter("export", OpenApiTypes.STR, required=False, enum=["csv"])]


NO_POLICY = {"expires_after": None, "lifetime_actions": []}


class KeyPage(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _input(serializer_class, request):
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data


class KeyListApi(HsmApi):
    required_permission = {"GET": "keys_app.view_keyrecord", "POST": "keys_app.add_keyrecord"}

    @extend_schema(parameters=_FILTERS, responses=KeyOutput(many=True))
    def get(self, request, hsm_id):
        form = KeyFilterForm(request.query_params)
        if not form.is_valid():
            raise BadInput("Invalid key filter.", fields=form.errors.get_json_data())
        keys = key_list(hsm=self.hsm(request, hsm_id), filters=form.to_filter()).select_related("hsm")
        if request.query_params.get("export") == "csv":
            return keys_csv_response(keys, f"keys-{hsm_id}.csv")
        paginator = KeyPage()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response(KeyOutput(page, many=True).data)

    @extend_schema(request=KeyCreateInput, responses={201: KeyDetailOutput},
                   description="Create a key (kty/preset), or import one (BYOK) given `key`.")
    def post(self, request, hsm_id):
        hsm = self.hsm(request, hsm_id)
        data = _input(KeyCreateInput, request).request_data()
        if "key" in data:
            record = services.key_import(hsm=hsm, name=data["name"], jwk=data["key"],
                                         not_before=data.get("not_before"),
                                         expires=data.get("expires"), tags=data.get("tags"),
                                         actor=request.user, request_id=request.id)
        else:
            record = services.key_create(hsm=hsm, spec=spec_from_request(data),
                                         actor=request.user, request_id=request.id)
        return Response(KeyDetailOutput(record).data, status=status.HTTP_201_CREATED)


class KeyDetailApi(HsmApi):
    required_permission = {"GET": "keys_app.view_keyrecord", "PATCH": "keys_app.change_keyrecord",
                           "DELETE": "keys_app.delete_keyrecord"}

    @extend_schema(responses=KeyDetailOutput)
    def get(self, request, hsm_id, name):
        return Response(KeyDetailOutput(key_get(hsm=self.hsm(request, hsm_id), name=name)).data)

    @extend_schema(request=KeyUpdateInput, responses={200: KeyDetailOutput,
                                                      202: ApprovalPendingOutput})
    def patch(self, request, hsm_id, name):
        data = _input(KeyUpdateInput, request).validated_data
        record = services.key_update(hsm=self.hsm(request, hsm_id), name=name, actor=request.user,
                                     request_id=request.id, **data)
        return api_outcome(record, KeyDetailOutput)  # disabling a key in use waits for approval

    @extend_schema(request=ConfirmInput, responses={202: ApprovalPendingOutput},
                   description="Soft delete, after approval: the body repeats the key name as "
                               "confirm_name; the answer is the pending approval request "
                               "(key.delete), which runs when another person approves it.")
    def delete(self, request, hsm_id, name):
        data = _input(ConfirmInput, request).validated_data
        return api_pending(services.key_delete(
            hsm=self.hsm(request, hsm_id), name=name, actor=request.user, request_id=request.id,
            confirm_name=data["confirm_name"], justification=data.get("justification", ""),
            ticket=data.get("ticket", "")))


class KeyVersionsApi(HsmApi):
    required_permission = "keys_app.view_keyrecord"

    @extend_schema(responses=KeyDetailOutput)
    def get(self, request, hsm_id, name):
        record = key_get(hsm=self.hsm(request, hsm_id), name=name)
        return Response(KeyDetailOutput(record).data["versions"])


class KeyRotateApi(HsmApi):
    required_permission = "keys_app.rotate_keyrecord"

    @extend_schema(request=None, responses=KeyOutput,
                   description="Rotate now: the response's version is the new current one.")
    def post(self, request, hsm_id, name):
        record = services.key_rotate(hsm=self.hsm(request, hsm_id), name=name, actor=request.user,
                                     request_id=request.id)
        return Response(KeyOutput(record).data)


class KeyRotationPolicyApi(HsmApi):
    required_permission = {"GET": "keys_app.view_keyrecord", "PUT": "keys_app.change_keyrecord",
                           "DELETE": "keys_app.change_keyrecord"}

    @extend_schema(responses=RotationPolicyIO, description="No policy: no lifetime actions.")
    def get(self, request, hsm_id, name):
        policy = key_get(hsm=self.hsm(request, hsm_id), name=name).rotation_policy
        return Response(policy or NO_POLICY)

    @extend_schema(request=RotationPolicyIO, responses=RotationPolicyIO)
    def put(self, request, hsm_id, name):
        policy = _input(RotationPolicyIO, request).validated_data
        record = services.key_rotation_policy_set(
            hsm=self.hsm(request, hsm_id), name=name, actor=request.user, request_id=request.id,
            policy={"expires_after": policy.get("expires_after"),
                    "lifetime_actions": [dict(a) for a in policy["lifetime_actions"]]},
            confirm_name=policy.get("confirm_name"))
        return Response(record.rotation_policy or NO_POLICY)

    @extend_schema(request=ConfirmInput, responses={202: ApprovalPendingOutput},
                   description="Clear the policy, after approval: the answer is the pending "
                               "approval request (key.rotation_policy.clear).")
    def delete(self, request, hsm_id, name):
        data = _input(ConfirmInput, request).validated_data
        return api_pending(services.key_rotation_policy_set(
            hsm=self.hsm(request, hsm_id), name=name, policy=None,
            confirm_name=data["confirm_name"], actor=request.user, request_id=request.id,
            justification=data.get("justification", ""), ticket=data.get("ticket", "")))


class KeyBackupApi(HsmApi):
    required_permission = "keys_app.backup_keyrecord"

    @extend_schema(request=None, responses=BackupIO)
    def post(self, request, hsm_id, name):
        blob = services.key_backup(hsm=self.hsm(request, hsm_id), name=name, actor=request.user,
                                   request_id=request.id)
        return Response({"value": base64.b64encode(blob).decode()})


class KeyRestoreApi(HsmApi):
    required_permission = "keys_app.backup_keyrecord"

    @extend_schema(request=BackupIO, responses={201: KeyDetailOutput})
    def post(self, request, hsm_id):
        value = _input(BackupIO, request).validated_data["value"]
        try:
            blob = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInput("value must be base64.", fields={"value": ["Not base64."]}) from exc
        record = services.key_restore(hsm=self.hsm(request, hsm_id), blob=blob,
                                      actor=request.user, request_id=request.id)
        return Response(KeyDetailOutput(record).data, status=status.HTTP_201_CREATED)


class KeyPublicApi(HsmApi):
    required_permission = "keys_app.view_keyrecord"

    @extend_schema(parameters=[OpenApiParameter("fmt", OpenApiTypes.STR, enum=["jwk", "pem"])],
                   responses={(200, "application/jwk+json"): OpenApiTypes.OBJECT})
    def get(self, request, hsm_id, name):
        body, content_type = services.key_public(hsm=self.hsm(request, hsm_id), name=name,
                                                 fmt=request.query_params.get("fmt", "jwk"))
        return HttpResponse(body, content_type=content_type)


class DeletedKeyListApi(HsmApi):
    required_permission = "keys_app.view_keyrecord"

    @extend_schema(responses=KeyOutput(many=True))
    def get(self, request, hsm_id):
        keys = key_list(hsm=self.hsm(request, hsm_id), filters=KeyFilter(state="deleted"))
        paginator = KeyPage()
        page = paginator.paginate_queryset(keys.select_related("hsm"), request, view=self)
        return paginator.get_paginated_response(KeyOutput(page, many=True).data)


class KeyRecoverApi(HsmApi):
    required_permission = "keys_app.delete_keyrecord"

    @extend_schema(request=None, responses=KeyDetailOutput)
    def post(self, request, hsm_id, name):
        record = services.key_recover(hsm=self.hsm(request, hsm_id), name=name, actor=request.user,
                                      request_id=request.id)
        return Response(KeyDetailOutput(record).data)


class KeyPurgeApi(HsmApi):
    required_permission = "keys_app.purge_keyrecord"

    @extend_schema(request=ConfirmInput, responses={202: ApprovalPendingOutput},
                   description="Purge, after approval: the answer is the pending approval "
                               "request (key.purge), which runs when another person approves "
                               "it. Needs a recent sign-in.")
    def post(self, request, hsm_id, name):
        ensure_recent_sign_in(request, operation="key.purge")
        data = _input(ConfirmInput, request).validated_data
        return api_pending(services.key_purge(
            hsm=self.hsm(request, hsm_id), name=name, actor=request.user, request_id=request.id,
            confirm_name=data["confirm_name"], justification=data.get("justification", ""),
            ticket=data.get("ticket", "")))


class KeySyncApi(HsmApi):
    required_permission = "keys_app.sync_keyrecord"

    @extend_schema(request=None, responses={202: JobOutput},
                   parameters=[OpenApiParameter("full", OpenApiTypes.BOOL, required=False)])
    def post(self, request, hsm_id):
        job = services.inventory_sync_start(hsm=self.hsm(request, hsm_id), actor=request.user,
                                            request_id=request.id,
                                            full=request.query_params.get("full") in ("1", "true"))
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class KeyStandardsReportApi(HsmApi):
    required_permission = "keys_app.view_keyrecord"

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, hsm_id):
        keys = key_list(hsm=self.hsm(request, hsm_id), filters=KeyFilter())
        report = [{"name": key.name, "violations": found} for key in keys.iterator()
                  if (found := standards_violations(key))]
        return Response({"keys_checked": keys.count(), "violations": report})
