"""Approvals over the API: what waits for me, my requests, one request, and the decisions."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.approvals.api.serializers import ApprovalDecideInput, ApprovalRequestOutput
from portal.approvals.models import ApprovalRequest
from portal.approvals.selectors import approval_get, approval_inbox, approval_list, approval_mine
from portal.approvals.services import approval_cancel, approval_decide
from portal.errors import BadInput

BOXES = ("inbox", "mine", "all")


class ApprovalPage(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ApprovalListApi(APIView):
    required_permission = "approvals.view_approvalrequest"

    @extend_schema(parameters=[
        OpenApiParameter("box", OpenApiTypes.STR, enum=list(BOXES), required=False,
                         description="inbox (default for approvers): pending requests waiting "
                                     "for my decision; mine: requests I made; all: every "
                                     "request (auditors' default)."),
        OpenApiParameter("status", OpenApiTypes.STR, required=False,
                         enum=list(ApprovalRequest.Status.values)),
        OpenApiParameter("operation", OpenApiTypes.STR, required=False)],
        responses=ApprovalRequestOutput(many=True))
    def get(self, request):
        may_decide = request.user.has_perm("approvals.decide_approvalrequest")
        box = request.query_params.get("box") or ("inbox" if may_decide else "all")
        status = request.query_params.get("status", "")
        if box not in BOXES:
            raise BadInput("box must be inbox, mine or all.", fields={"box": [", ".join(BOXES)]})
        if status and status not in ApprovalRequest.Status.values:
            raise BadInput("Unknown status.", fields={"status": list(ApprovalRequest.Status.values)})
        if box == "inbox":
            if not may_decide:
                raise BadInput("Only approvers and administrators have an inbox; ask for "
                               "box=mine or box=all.", fields={"box": ["mine or all"]})
            requests = approval_inbox(user=request.user)
        elif box == "mine":
            requests = approval_mine(user=request.user)
        else:
            requests = approval_list(status=status,
                                     operation=request.query_params.get("operation", ""))
        paginator = ApprovalPage()
        page = paginator.paginate_queryset(requests, request, view=self)
        return paginator.get_paginated_response(ApprovalRequestOutput(page, many=True).data)


class ApprovalDetailApi(APIView):
    required_permission = "approvals.view_approvalrequest"

    @extend_schema(responses=ApprovalRequestOutput)
    def get(self, request, approval_id: int):
        return Response(ApprovalRequestOutput(approval_get(approval_id=approval_id)).data)


class _DecideApi(APIView):
    required_permission = "approvals.decide_approvalrequest"
    decision = ""

    def post(self, request, approval_id: int):
        data = ApprovalDecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        req = approval_decide(approval_id=approval_id, actor=request.user, decision=self.decision,
                              comment=data.validated_data["comment"], request_id=request.id,
                              door="api")
        return Response(ApprovalRequestOutput(approval_get(approval_id=req.pk)).data)


class ApprovalApproveApi(_DecideApi):
    decision = "approve"

    @extend_schema(request=ApprovalDecideInput, responses=ApprovalRequestOutput,
                   description="Approve (never your own request: 403 self_approval_refused). "
                               "The last approval the policy needs queues the execution job.")
    def post(self, request, approval_id: int):
        return super().post(request, approval_id)


class ApprovalDenyApi(_DecideApi):
    decision = "deny"

    @extend_schema(request=ApprovalDecideInput, responses=ApprovalRequestOutput,
                   description="Deny (never your own request); one deny ends the request.")
    def post(self, request, approval_id: int):
        return super().post(request, approval_id)


class ApprovalCancelApi(APIView):
    required_permission = "approvals.view_approvalrequest"

    @extend_schema(request=None, responses=ApprovalRequestOutput,
                   description="The requester withdraws a request that has not run yet.")
    def post(self, request, approval_id: int):
        req = approval_cancel(approval_id=approval_id, actor=request.user, request_id=request.id)
        return Response(ApprovalRequestOutput(approval_get(approval_id=req.pk)).data)
