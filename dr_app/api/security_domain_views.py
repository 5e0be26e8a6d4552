"""The security domain over the API: the same services as the pages.

Activation status, activation (download with certificates + quorum, as a job; the security
domain then handed over once), init-recovery (exchange key), upload (approval + step-up),
and the custody ledger (custodians, challenges, proof of possession, stale custody)."""
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from dr_app import security_domain as services
from dr_app.api.security_domain_serializers import (ActivateInput, ChallengeOutput,
                                                    CustodianInput, CustodianOutput,
                                                    ExchangeKeyOutput, FindingOutput,
                                                    ProveInput, QuorumInput,
                                                    SecurityDomainOutput, UploadInput)
from dr_app.security_domain_selectors import custodian_get, custodian_list, custody_findings
from portal.accounts.stepup import ensure_recent_sign_in
from portal.api import HsmApi, api_input
from portal.approvals.api.serializers import ApprovalPendingOutput
from portal.approvals.responses import api_pending
from portal.errors import PortalError
from portal.gateway.selectors import hsm_get_for_user
from portal.jobs.api.serializers import JobOutput


class SecurityDomainApi(HsmApi):
    required_permission = "dr_app.view_custodian"

    @extend_schema(responses=SecurityDomainOutput,
                   description="Activation status (asked from the HSM now; when it cannot be "
                               "asked, what it said last, with `checked`), quorum, recovery "
                               "under way, and the custody warnings.")
    def get(self, request, hsm_id):
        from dr_app.security_domain_selectors import sd_state_get

        hsm = self.hsm(request, hsm_id)
        try:
            state = services.security_domain_status_refresh(hsm=hsm)
        except PortalError:
            state = sd_state_get(hsm=hsm)
        state.findings = custody_findings(hsm=hsm)
        state.custodians = custodian_list(hsm=hsm).filter(status="active").count()
        return Response(SecurityDomainOutput(state).data)


class SecurityDomainActivateApi(HsmApi):
    required_permission = "dr_app.manage_security_domain"

    @extend_schema(request=ActivateInput, responses={202: JobOutput},
                   operation_id="security_domain_download_start",
                   description="Activate an un-activated HSM: a job downloads its security "
                               "domain wrapped to the 3-10 custodian certificates with this "
                               "quorum and waits for activation. Then POST "
                               "`.../download/{job_id}/` once to receive the security domain.")
    def post(self, request, hsm_id):
        data = api_input(ActivateInput, request)
        job = services.security_domain_activate_start(
            hsm=self.hsm(request, hsm_id), quorum=data["quorum"],
            custodians=[dict(item) for item in data["custodians"]], actor=request.user,
            request_id=request.id)
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class SecurityDomainDownloadApi(HsmApi):
    required_permission = "dr_app.manage_security_domain"

    @extend_schema(request=None, operation_id="security_domain_download_fetch",
                   responses={(200, "application/json"): OpenApiTypes.BINARY,
                              409: OpenApiResponse(description="Downloaded already (offered "
                                                               "once) or expired.")},
                   description="The security domain of an activation job, once, to the user "
                               "who started it. Audited as downloaded (SHA-256, size).")
    def post(self, request, hsm_id, job_id):
        blob, filename = services.security_domain_download_fetch(
            hsm=self.hsm(request, hsm_id), job_id=job_id, actor=request.user,
            request_id=request.id)
        response = HttpResponse(blob, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response


class SecurityDomainInitRecoveryApi(HsmApi):
    required_permission = "dr_app.manage_security_domain"

    @extend_schema(request=None, responses=ExchangeKeyOutput,
                   description="Init-recovery: the HSM's exchange (transfer) key, which the "
                               "custodians re-wrap the saved security domain to, offline.")
    def post(self, request, hsm_id):
        key = services.security_domain_recovery_init(hsm=self.hsm(request, hsm_id),
                                                     actor=request.user, request_id=request.id)
        return Response(key)


class SecurityDomainUploadApi(HsmApi):
    required_permission = "dr_app.manage_security_domain"
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(request={"multipart/form-data": UploadInput, "application/json": UploadInput},
                   responses={202: ApprovalPendingOutput},
                   description="Upload the security domain the custodians prepared for this "
                               "HSM's exchange key. Needs approval (bound to the file's "
                               "SHA-256) and, for a browser session, a recent sign-in (401 "
                               "step_up_required). The file is never stored in the database.")
    def post(self, request, hsm_id):
        ensure_recent_sign_in(request, operation=services.UPLOAD_OPERATION)
        hsm = self.hsm(request, hsm_id)
        data = api_input(UploadInput, request)
        blob = data["file"].read() if data.get("file") else data["value"].encode()
        result = services.security_domain_upload_request(
            hsm=hsm, blob=blob, actor=request.user, request_id=request.id,
            justification=data["justification"], ticket=data["ticket"],
            source_hsm=data["source_hsm"])
        # Always a pending approval: the upload job starts only when it is approved.
        return api_pending(result)


class SecurityDomainQuorumApi(HsmApi):
    required_permission = "dr_app.change_custodian"

    @extend_schema(request=QuorumInput, responses=SecurityDomainOutput,
                   description="Record the quorum of an HSM activated outside the portal.")
    def put(self, request, hsm_id):
        state = services.quorum_record(hsm=self.hsm(request, hsm_id),
                                       quorum=api_input(QuorumInput, request)["quorum"],
                                       actor=request.user, request_id=request.id)
        state.findings = custody_findings(hsm=state.hsm)
        state.custodians = custodian_list(hsm=state.hsm).filter(status="active").count()
        return Response(SecurityDomainOutput(state).data)


class CustodianListApi(HsmApi):
    required_permission = {"GET": "dr_app.view_custodian", "POST": "dr_app.change_custodian"}

    @extend_schema(responses=CustodianOutput(many=True),
                   description="The custody ledger of the HSM (retired custodians with "
                               "?retired=1).")
    def get(self, request, hsm_id):
        rows = custodian_list(hsm=self.hsm(request, hsm_id),
                              include_retired=request.query_params.get("retired") in ("1", "true"))
        return Response(CustodianOutput(rows, many=True).data)

    @extend_schema(request=CustodianInput, responses={201: CustodianOutput})
    def post(self, request, hsm_id):
        data = api_input(CustodianInput, request)
        custodian = services.custodian_add(hsm=self.hsm(request, hsm_id), name=data["name"],
                                           email=data["email"], certificate=data["certificate"],
                                           actor=request.user, request_id=request.id)
        return Response(CustodianOutput(custodian).data, status=status.HTTP_201_CREATED)


class CustodianDetailApi(HsmApi):
    required_permission = "dr_app.view_custodian"

    @extend_schema(responses=CustodianOutput)
    def get(self, request, hsm_id, custodian_id):
        return Response(CustodianOutput(custodian_get(
            hsm=self.hsm(request, hsm_id), custodian_id=custodian_id)).data)


class CustodianRetireApi(HsmApi):
    required_permission = "dr_app.change_custodian"

    @extend_schema(request=None, responses=CustodianOutput)
    def post(self, request, hsm_id, custodian_id):
        custodian = custodian_get(hsm=self.hsm(request, hsm_id), custodian_id=custodian_id)
        return Response(CustodianOutput(services.custodian_retire(
            custodian=custodian, actor=request.user, request_id=request.id)).data)


class CustodyChallengeApi(HsmApi):
    required_permission = "dr_app.change_custodian"

    @extend_schema(request=None, responses={201: ChallengeOutput},
                   description="A one-time challenge (7 days) for the custodian to sign with "
                               "their private key, offline: RSA SHA-256, PKCS#1 v1.5 or PSS.")
    def post(self, request, hsm_id, custodian_id):
        custodian = custodian_get(hsm=self.hsm(request, hsm_id), custodian_id=custodian_id)
        challenge = services.custody_challenge_issue(custodian=custodian, actor=request.user,
                                                     request_id=request.id)
        return Response({"id": challenge.pk, "expires": challenge.expires,
                         "text": services.challenge_text(challenge).decode()},
                        status=status.HTTP_201_CREATED)


class CustodyProveApi(HsmApi):
    required_permission = "dr_app.change_custodian"

    @extend_schema(request=ProveInput, responses=CustodianOutput,
                   description="Prove custody: the signature of the challenge text verifies "
                               "against the custodian's certificate (400 custody_not_proven "
                               "otherwise).")
    def post(self, request, hsm_id, custodian_id):
        custodian = custodian_get(hsm=self.hsm(request, hsm_id), custodian_id=custodian_id)
        data = api_input(ProveInput, request)
        custodian = services.custody_prove(custodian=custodian, challenge_id=data["challenge"],
                                           signature=data["signature"], actor=request.user,
                                           request_id=request.id)
        return Response(CustodianOutput(custodian).data)


class CustodyFindingsApi(APIView):
    required_permission = "dr_app.view_custodian"

    @extend_schema(responses=FindingOutput(many=True),
                   description="Custody warnings of every HSM: stale or never-proven custody, "
                               "expired or expiring certificates, quorum at risk.")
    def get(self, request):
        if request.query_params.get("hsm"):
            hsm = hsm_get_for_user(user=request.user, hsm_id=request.query_params["hsm"])
            return Response(FindingOutput(custody_findings(hsm=hsm), many=True).data)
        return Response(FindingOutput(custody_findings(), many=True).data)

