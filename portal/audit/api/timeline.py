"""Timelines and the chain status over the API (/api/v1/timeline/..., /api/v1/audit/chain/)."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.audit.forms import PrincipalForm, TimelineFilterForm
from portal.audit.timeline import TimelineScope, timeline_page
from portal.audit.timeline_views import EXPORT_TYPES, export_download, parsed_timeline_filter
from portal.errors import BadInput, NotAllowed, NotFound
from portal.gateway.selectors import hsm_get_for_user
from portal.jobs.api.serializers import JobOutput

_PARAMS = [OpenApiParameter(name, OpenApiTypes.STR, required=False,
                            description=str(field.help_text or ""))
           for name, field in TimelineFilterForm.base_fields.items() if name != "before"] + [
    OpenApiParameter("before", OpenApiTypes.DATETIME, required=False,
                     description="Cursor: entries older than this time (the `next` link)."),
    OpenApiParameter("export", OpenApiTypes.STR, required=False, enum=["csv", "json"],
                     description="Download every matching entry (streamed; audited)."),
]


class CauseOutput(serializers.Serializer):
    seq = serializers.IntegerField()
    action = serializers.CharField()
    actor = serializers.CharField()
    outcome = serializers.CharField()


class EntryOutput(serializers.Serializer):
    source = serializers.ChoiceField(choices=["portal", "hsm"])
    time = serializers.DateTimeField()
    actor = serializers.CharField()
    action = serializers.CharField(help_text="portal action, or the HSM's operationName")
    target = serializers.CharField()
    outcome = serializers.CharField(help_text="portal outcome, or the HSM's resultSignature")
    correlation = serializers.CharField(help_text="request id / correlation id of the join")
    ref = serializers.CharField(help_text="#seq of a portal row; hsm:id of an HSM event")
    detail = serializers.DictField()
    caused_by = CauseOutput(many=True, help_text="HSM events: the portal rows that caused it")


TimelineOutput = inline_serializer("TimelineOutput", fields={
    "scope": serializers.DictField(), "results": EntryOutput(many=True),
    "next": serializers.CharField(allow_null=True)})


class TimelineApi(APIView):
    required_permission = "audit.view_hsmauditevent"

    def scope(self, request, **kwargs) -> TimelineScope:
        raise NotImplementedError

    def answer(self, request, scope: TimelineScope):
        fmt = request.query_params.get("export")
        if fmt:
            if fmt not in EXPORT_TYPES:
                raise BadInput("Export format must be 'csv' or 'json'.")
            if not request.user.has_perm("audit.export_auditevent"):
                raise NotAllowed("Exporting needs the audit export permission.")
            return export_download(request, scope, fmt)
        form = parsed_timeline_filter(request.query_params)
        entries, next_before = timeline_page(scope=scope, filters=form.to_filter(),
                                             before=form.cleaned_data.get("before"))
        next_url = None
        if next_before:
            query = request.query_params.copy()
            query["before"] = next_before.isoformat()
            next_url = request.build_absolute_uri(request.path + "?" + query.urlencode())
        return Response({"scope": {"kind": scope.kind, "hsm": scope.hsm, "key": scope.key,
                                   "principal": scope.principal},
                         "results": EntryOutput([entry.as_dict() for entry in entries],
                                                many=True).data,
                         "next": next_url})


class KeyTimelineApi(TimelineApi):
    @extend_schema(parameters=_PARAMS, responses=TimelineOutput,
                   summary="A key's timeline: portal rows and HSM events, joined")
    def get(self, request, hsm_id, name):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return self.answer(request, TimelineScope("key", hsm=hsm.name, key=name))


class HsmTimelineApi(TimelineApi):
    @extend_schema(parameters=_PARAMS, responses=TimelineOutput,
                   summary="An HSM's timeline: portal rows and HSM events, joined")
    def get(self, request, hsm_id):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        return self.answer(request, TimelineScope("hsm", hsm=hsm.name))


class PrincipalTimelineApi(TimelineApi):
    @extend_schema(parameters=_PARAMS, responses=TimelineOutput,
                   summary="A principal's timeline (directory object id, or local:<id>)")
    def get(self, request, principal):
        form = PrincipalForm({"principal": principal})
        if not form.is_valid():
            raise NotFound("A principal is a directory object id (a GUID) or local:<number>.")
        return self.answer(request, TimelineScope(
            "principal", principal=form.cleaned_data["principal"].lower()))


class VerificationOutput(serializers.Serializer):
    started = serializers.DateTimeField()
    finished = serializers.DateTimeField(allow_null=True)
    trigger = serializers.CharField()
    actor_name = serializers.CharField()
    job_id = serializers.IntegerField(allow_null=True)
    rows = serializers.IntegerField()
    first_seq = serializers.IntegerField(allow_null=True)
    head_seq = serializers.IntegerField()
    ok = serializers.BooleanField(allow_null=True)
    first_bad_seq = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    checkpoints = serializers.IntegerField()
    checkpoint_problems = serializers.ListField(child=serializers.DictField())


class CheckpointOutput(serializers.Serializer):
    kind = serializers.CharField()
    seq = serializers.IntegerField()
    hash = serializers.CharField()
    time = serializers.DateTimeField()
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    blob_name = serializers.CharField()


ChainStatusOutput = inline_serializer("AuditChainStatusOutput", fields={
    "head_seq": serializers.IntegerField(), "head_hash": serializers.CharField(),
    "last_verification": VerificationOutput(allow_null=True),
    "verifications": VerificationOutput(many=True),
    "checkpoints": CheckpointOutput(many=True),
    "oldest_seq": serializers.IntegerField(allow_null=True),
    "retention_days": serializers.IntegerField(),
    "hsm_events": serializers.IntegerField()})


class ChainStatusApi(APIView):
    required_permission = "audit.view_auditverification"

    @extend_schema(responses=ChainStatusOutput, summary="The audit chain's last verifications "
                   "and signed checkpoints")
    def get(self, request):
        from portal.audit.selectors import chain_status

        data = chain_status()
        return Response({
            "head_seq": data["head_seq"], "head_hash": data["head_hash"],
            "last_verification": VerificationOutput(data["last"]).data if data["last"] else None,
            "verifications": VerificationOutput(data["verifications"], many=True).data,
            "checkpoints": CheckpointOutput(data["checkpoints"], many=True).data,
            "oldest_seq": data["oldest"]["seq"] if data["oldest"] else None,
            "retention_days": data["retention_days"], "hsm_events": data["hsm_events"]})


class ChainVerifyApi(APIView):
    required_permission = "audit.add_auditverification"

    @extend_schema(request=None, responses={202: JobOutput},
                   summary="Verify now: a job re-computes the chain and checks the checkpoints")
    def post(self, request):
        from portal.audit.checkpoints import audit_verify_start

        job = audit_verify_start(actor=request.user, request_id=request.id)
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)
