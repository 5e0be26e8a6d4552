"""Local RBAC over the API: every CLI verb (role definition create/update/show/list/delete,
role assignment create/show/list/delete), access requests and access reviews. A grant or a
revocation answers 202 with the approval request it waits for."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from access_app import selectors, services
from access_app.api.serializers import (AccessRequestCreateInput, AccessRequestInput,
                                        AccessRequestOutput, AdoptInput, CampaignInput,
                                        CampaignOutput, ConfirmInput, EffectiveAccessOutput,
                                        ReviewAnswerInput, ReviewItemOutput, RevokeInput,
                                        RoleAssignmentOutput, RoleDefinitionInput,
                                        RoleDefinitionOutput)
from access_app.views import _step_up_for
from keys_app.selectors import key_get
from portal.api import HsmApi, api_input
from portal.approvals.api.serializers import ApprovalPendingOutput
from portal.approvals.responses import api_outcome, api_pending
from portal.gateway.selectors import hsm_get_for_user

VIEW = "access_app.view_roleassignmentrecord"
GRANT = "access_app.grant_roleassignmentrecord"


def _assignments_output(rows) -> list:
    rows = list(rows)
    names = selectors.principal_names([r.principal_id for r in rows])
    return RoleAssignmentOutput(rows, many=True, context={"names": names}).data


def _granted_or_pending(access_request, pending):
    if pending is not None:
        return api_pending(pending)
    return Response(AccessRequestOutput(access_request).data, status=status.HTTP_201_CREATED)


class RoleDefinitionListApi(HsmApi):
    required_permission = {"GET": "access_app.view_roledefinitionrecord",
                           "POST": "access_app.add_roledefinitionrecord"}

    @extend_schema(responses=RoleDefinitionOutput(many=True),
                   description="az keyvault role definition list: built-in and custom roles "
                               "(the portal's copy; POST .../role-assignments/sync/ refreshes).")
    def get(self, request, hsm_id):
        return Response(RoleDefinitionOutput(selectors.role_definitions(
            hsm=self.hsm(request, hsm_id)), many=True).data)

    @extend_schema(request=RoleDefinitionInput, responses={201: RoleDefinitionOutput},
                   description="az keyvault role definition create: a custom role at scope /.")
    def post(self, request, hsm_id):
        data = api_input(RoleDefinitionInput, request)
        record = services.role_definition_save(hsm=self.hsm(request, hsm_id), name=None,
                                               actor=request.user, request_id=request.id, **data)
        return Response(RoleDefinitionOutput(record).data, status=status.HTTP_201_CREATED)


class RoleDefinitionDetailApi(HsmApi):
    required_permission = {"GET": "access_app.view_roledefinitionrecord",
                           "PUT": "access_app.change_roledefinitionrecord",
                           "DELETE": "access_app.delete_roledefinitionrecord"}

    @extend_schema(responses=RoleDefinitionOutput, description="az keyvault role definition show")
    def get(self, request, hsm_id, role):
        return Response(RoleDefinitionOutput(selectors.role_definition_get(
            hsm=self.hsm(request, hsm_id), name=role)).data)

    @extend_schema(request=RoleDefinitionInput, responses=RoleDefinitionOutput,
                   description="az keyvault role definition update (custom roles only)")
    def put(self, request, hsm_id, role):
        data = api_input(RoleDefinitionInput, request)
        record = services.role_definition_save(hsm=self.hsm(request, hsm_id), name=role,
                                               actor=request.user, request_id=request.id, **data)
        return Response(RoleDefinitionOutput(record).data)

    @extend_schema(request=ConfirmInput, responses={204: None},
                   description="az keyvault role definition delete (custom roles not in use); "
                               "the body repeats the role name as confirm_name.")
    def delete(self, request, hsm_id, role):
        data = api_input(ConfirmInput, request)
        services.role_definition_delete(hsm=self.hsm(request, hsm_id), name=role,
                                        confirm_name=data["confirm_name"], actor=request.user,
                                        request_id=request.id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoleAssignmentListApi(HsmApi):
    required_permission = {"GET": VIEW, "POST": "access_app.add_accessrequest"}

    @extend_schema(parameters=[
        OpenApiParameter("scope", OpenApiTypes.STR, required=False),
        OpenApiParameter("principal_id", OpenApiTypes.STR, required=False),
        OpenApiParameter("drift", OpenApiTypes.BOOL, required=False)],
        responses=RoleAssignmentOutput(many=True),
        description="az keyvault role assignment list (the portal's copy of the HSM's "
                    "assignments, with drift flagged).")
    def get(self, request, hsm_id):
        scope = request.query_params.get("scope") or None
        if scope:
            services.scope_validate(scope)
        rows = selectors.role_assignments(
            hsm=self.hsm(request, hsm_id), scope=scope,
            principal_id=request.query_params.get("principal_id", "")[:64],
            drift_only=request.query_params.get("drift") in ("1", "true"))
        return Response(_assignments_output(rows))

    @extend_schema(request=AccessRequestInput,
                   responses={202: ApprovalPendingOutput, 201: AccessRequestOutput},
                   description="az keyvault role assignment create: every grant is an access "
                               "request; 202 with the approval request it waits for. Scope / "
                               "needs a recent sign-in in a browser session (step-up).")
    def post(self, request, hsm_id):
        data = api_input(AccessRequestInput, request)
        _step_up_for(request, data["scope"])
        access_request, pending = services.access_request_create(
            hsm=self.hsm(request, hsm_id), actor=request.user, request_id=request.id, **data)
        return _granted_or_pending(access_request, pending)


class RoleAssignmentSyncApi(HsmApi):
    required_permission = "access_app.sync_roledefinitionrecord"

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT},
                   description="Read role definitions and assignments from the HSM now; "
                               "assignments the portal did not make are flagged as drift.")
    def post(self, request, hsm_id):
        return Response(services.rbac_sync(hsm=self.hsm(request, hsm_id), actor=request.user,
                                           request_id=request.id))


class RoleAssignmentDetailApi(HsmApi):
    required_permission = {"GET": VIEW, "DELETE": GRANT}

    @extend_schema(responses=RoleAssignmentOutput, description="az keyvault role assignment show")
    def get(self, request, hsm_id, assignment):
        row = selectors.role_assignment_get(hsm=self.hsm(request, hsm_id), name=assignment)
        return Response(_assignments_output([row])[0])

    @extend_schema(request=RevokeInput, responses={202: ApprovalPendingOutput},
                   description="az keyvault role assignment delete: needs approval "
                               "(role_assignment.delete); 202 with the approval request.")
    def delete(self, request, hsm_id, assignment):
        data = api_input(RevokeInput, request)
        result = services.role_assignment_revoke_request(
            hsm=self.hsm(request, hsm_id), name=assignment, actor=request.user,
            request_id=request.id, justification=data["justification"])
        return api_outcome(result, status_code=status.HTTP_204_NO_CONTENT)


class RoleAssignmentAdoptApi(HsmApi):
    required_permission = GRANT

    @extend_schema(request=AdoptInput, responses={202: ApprovalPendingOutput},
                   description="Adopt an assignment made outside the portal (drift) into an "
                               "access request: once approved it is the portal's, time-boxed.")
    def post(self, request, hsm_id, assignment):
        data = api_input(AdoptInput, request)
        hsm = self.hsm(request, hsm_id)
        _step_up_for(request, selectors.role_assignment_get(hsm=hsm, name=assignment).scope)
        access_request, pending = services.drift_adopt(
            hsm=hsm, name=assignment, actor=request.user,
            request_id=request.id, **data)
        return _granted_or_pending(access_request, pending)


class EffectiveAccessApi(HsmApi):
    required_permission = VIEW

    @extend_schema(responses=EffectiveAccessOutput(many=True),
                   description="Who has access to a key: assignments at /, /keys and "
                               "/keys/<name>, whether each can unwrap with it, and since when.")
    def get(self, request, hsm_id, name):
        hsm = self.hsm(request, hsm_id)
        key = key_get(hsm=hsm, name=name)
        return Response(EffectiveAccessOutput(
            selectors.effective_access(hsm=hsm, key_name=key.name), many=True).data)


class AccessRequestListApi(APIView):
    required_permission = {"GET": "access_app.view_accessrequest",
                           "POST": "access_app.add_accessrequest"}

    @extend_schema(parameters=[OpenApiParameter("status", OpenApiTypes.STR, required=False)],
                   responses=AccessRequestOutput(many=True))
    def get(self, request):
        wanted = request.query_params.get("status", "")
        if wanted and wanted not in services.AccessRequest.Status.values:
            from portal.errors import BadInput

            raise BadInput("Unknown status.", fields={"status": [
                "One of " + ", ".join(services.AccessRequest.Status.values)]})
        return Response(AccessRequestOutput(selectors.access_requests(status=wanted)[:500],
                                            many=True).data)

    @extend_schema(request=AccessRequestCreateInput,
                   responses={202: ApprovalPendingOutput, 201: AccessRequestOutput},
                   description="Request role R at scope S for principal P, time-boxed; 202 "
                               "with the approval request.")
    def post(self, request):
        data = dict(api_input(AccessRequestCreateInput, request))
        hsm = hsm_get_for_user(user=request.user, hsm_id=data.pop("hsm"))
        _step_up_for(request, data["scope"])
        access_request, pending = services.access_request_create(
            hsm=hsm, actor=request.user, request_id=request.id, **data)
        return _granted_or_pending(access_request, pending)


class AccessRequestDetailApi(APIView):
    required_permission = "access_app.view_accessrequest"

    @extend_schema(responses=AccessRequestOutput)
    def get(self, request, access_request_id):
        row = services.access_request_deny_sync(
            request=selectors.access_request_get(request_id=access_request_id))
        return Response(AccessRequestOutput(row).data)


class CampaignListApi(APIView):
    required_permission = {"GET": "access_app.view_reviewcampaign",
                           "POST": "access_app.add_reviewcampaign"}

    @extend_schema(responses=CampaignOutput(many=True))
    def get(self, request):
        return Response(CampaignOutput(selectors.campaigns().prefetch_related("items")[:100],
                                       many=True).data)

    @extend_schema(request=CampaignInput, responses={201: CampaignOutput},
                   description="Start an access review of every standing assignment of an HSM.")
    def post(self, request):
        data = api_input(CampaignInput, request)
        campaign = services.campaign_start(
            hsm=hsm_get_for_user(user=request.user, hsm_id=data["hsm"]), name=data["name"],
            days=data["days"], actor=request.user, request_id=request.id)
        return Response(CampaignOutput(campaign).data, status=status.HTTP_201_CREATED)


class CampaignDetailApi(APIView):
    required_permission = "access_app.view_reviewcampaign"

    @extend_schema(responses=CampaignOutput, description="The campaign and every answer "
                                                         "(its evidence).")
    def get(self, request, campaign_id):
        return Response(CampaignOutput(selectors.campaign_get(campaign_id=campaign_id)).data)


class ReviewAnswerApi(APIView):
    required_permission = "access_app.view_reviewcampaign"

    @extend_schema(request=ReviewAnswerInput, responses=ReviewItemOutput,
                   description="The key's owner (or, for /, /keys and keys without an owner "
                               "tag, an HSM administrator) keeps or revokes one assignment; "
                               "a revoke goes to approval.")
    def post(self, request, item_id):
        data = api_input(ReviewAnswerInput, request)
        item = services.review_answer(item_id=item_id, actor=request.user,
                                      request_id=request.id, **data)
        return Response(ReviewItemOutput(item).data)
