"""Backups, restores, schedules and DR drills over the API: the same services as the pages."""
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from dr_app import selectors, services
from dr_app.api.serializers import (BackupOutput, BackupStartInput, CheckOutput, DrillOutput,
                                    DrillStartInput, RestoreCheckInput, RestoreStartInput,
                                    ScheduleInput, ScheduleOutput)
from portal.accounts.stepup import ensure_recent_sign_in
from portal.api import HsmApi, api_input
from portal.approvals.api.serializers import ApprovalPendingOutput
from portal.approvals.responses import api_outcome
from portal.errors import NotFound
from portal.gateway.selectors import hsm_get_for_user
from portal.jobs.api.serializers import JobOutput


# A selective restore answers with its job; a full restore with the approval it waits for.
RESTORE_ACCEPTED = PolymorphicProxySerializer(
    component_name="RestoreAccepted", serializers=[JobOutput, ApprovalPendingOutput],
    resource_type_field_name=None)


class CatalogPage(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class BackupListApi(HsmApi):
    required_permission = {"GET": "dr_app.view_backuprecord", "POST": "dr_app.start_backup"}

    @extend_schema(responses=BackupOutput(many=True),
                   description="The HSM's backup catalog: folders the portal backed up (with "
                               "their jobs) and folders found in the storage container.")
    def get(self, request, hsm_id):
        paginator = CatalogPage()
        page = paginator.paginate_queryset(selectors.backup_list(hsm=self.hsm(request, hsm_id)),
                                           request, view=self)
        return paginator.get_paginated_response(BackupOutput(page, many=True).data)

    @extend_schema(request=BackupStartInput, responses={202: JobOutput},
                   description="Start a full backup now (a job: follow it at /api/v1/jobs/{id}/).")
    def post(self, request, hsm_id):
        data = api_input(BackupStartInput, request)
        job = services.backup_start(hsm=self.hsm(request, hsm_id), actor=request.user,
                                    request_id=request.id, container=data.get("container", ""),
                                    auth_mode=data["auth_mode"])
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class BackupCatalogRefreshApi(HsmApi):
    required_permission = "dr_app.start_backup"

    @extend_schema(request=BackupStartInput, responses=BackupOutput(many=True),
                   description="Read the storage container and add folders the catalog lacks.")
    def post(self, request, hsm_id):
        hsm = self.hsm(request, hsm_id)
        services.catalog_refresh(hsm=hsm, container=api_input(BackupStartInput, request)
                                 .get("container", ""), actor=request.user,
                                 request_id=request.id)
        return Response(BackupOutput(selectors.backup_list(hsm=hsm)[:50], many=True).data)


class PreBackupCheckApi(HsmApi):
    required_permission = "dr_app.start_backup"

    @extend_schema(request=BackupStartInput, responses=CheckOutput,
                   description="The HSM's pre-backup check: could it back up into the "
                               "container now? Nothing is written.")
    def post(self, request, hsm_id):
        data = api_input(BackupStartInput, request)
        return Response(services.pre_backup_check(
            hsm=self.hsm(request, hsm_id), actor=request.user, request_id=request.id,
            container=data.get("container", ""), auth_mode=data["auth_mode"]))


class RestoreStartApi(HsmApi):
    required_permission = "dr_app.restore_backup"

    @extend_schema(request=RestoreStartInput, responses={202: RESTORE_ACCEPTED},
                   description="Restore into this HSM from a backup folder: one key "
                               "(`key_name`) or the whole HSM. A full restore needs a recent "
                               "sign-in and an approval (202 with `approval_request` until "
                               "approved). The job checks readiness first and takes a safety "
                               "backup of this HSM when it has none from the last 30 minutes.")
    def post(self, request, hsm_id):
        data = api_input(RestoreStartInput, request)
        hsm = self.hsm(request, hsm_id)
        if not data.get("key_name"):
            ensure_recent_sign_in(request, operation="restore.full")
        approval = _approval(data.get("approval_id"))
        result = services.restore_start(
            hsm_id=hsm.name, folder=data["folder"], container=data.get("container", ""),
            key_name=data.get("key_name", ""), auth_mode=data["auth_mode"],
            actor=request.user, request_id=request.id, approval=approval,
            justification=data.get("justification", ""))
        # 202 with the queued job, or with the approval request a full restore waits for.
        return api_outcome(result, JobOutput, status_code=status.HTTP_202_ACCEPTED)


def _approval(approval_id):
    if not approval_id:
        return None
    try:
        from portal.approvals.models import ApprovalRequest
    except ImportError:
        return None
    found = ApprovalRequest.objects.filter(pk=approval_id).first()
    if found is None:
        raise NotFound("No approval request has that id.")
    return found


class PreRestoreCheckApi(HsmApi):
    required_permission = "dr_app.restore_backup"

    @extend_schema(request=RestoreCheckInput, responses=CheckOutput,
                   description="The HSM's pre-restore check of a folder (readable, same "
                               "security domain). Nothing is restored.")
    def post(self, request, hsm_id):
        data = api_input(RestoreCheckInput, request)
        return Response(services.pre_restore_check(
            hsm=self.hsm(request, hsm_id), actor=request.user, request_id=request.id,
            folder=data["folder"], container=data.get("container", ""),
            auth_mode=data["auth_mode"]))


class ScheduleListApi(HsmApi):
    required_permission = {"GET": "dr_app.view_backuprecord", "POST": "dr_app.start_backup"}

    @extend_schema(responses=ScheduleOutput(many=True))
    def get(self, request, hsm_id):
        return Response(ScheduleOutput(selectors.schedule_list(hsm=self.hsm(request, hsm_id)),
                                       many=True).data)

    @extend_schema(request=ScheduleInput, responses={201: ScheduleOutput},
                   description="Create or replace (same name) a backup schedule: every 1-168 "
                               "hours at a minute, with retention by age and/or count.")
    def post(self, request, hsm_id):
        data = api_input(ScheduleInput, request)
        schedule = services.schedule_save(hsm=self.hsm(request, hsm_id), actor=request.user,
                                          request_id=request.id, **data)
        return Response(ScheduleOutput(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailApi(HsmApi):
    required_permission = {"GET": "dr_app.view_backuprecord", "DELETE": "dr_app.start_backup"}

    @extend_schema(responses=ScheduleOutput)
    def get(self, request, hsm_id, schedule_id: int):
        return Response(ScheduleOutput(selectors.schedule_get(
            hsm=self.hsm(request, hsm_id), schedule_id=schedule_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, hsm_id, schedule_id: int):
        schedule = selectors.schedule_get(hsm=self.hsm(request, hsm_id), schedule_id=schedule_id)
        services.schedule_delete(schedule=schedule, actor=request.user, request_id=request.id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DrillCursor(CursorPagination):
    ordering = ("-created", "-id")
    page_size = 50


class DrillListApi(APIView):
    required_permission = {"GET": "dr_app.view_backuprecord", "POST": "dr_app.restore_backup"}

    @extend_schema(responses=DrillOutput(many=True), description="DR drill history.")
    def get(self, request):
        paginator = DrillCursor()
        page = paginator.paginate_queryset(selectors.drill_list(), request, view=self)
        return paginator.get_paginated_response(DrillOutput(page, many=True).data)

    @extend_schema(request=DrillStartInput, responses={202: DrillOutput},
                   description="Run a DR drill: back up the primary, take a safety backup of "
                               "the secondary, restore the primary's backup into the "
                               "secondary, compare keys, versions and role assignments, "
                               "report RTO and RPO. The secondary's keys are replaced.")
    def post(self, request):
        ensure_recent_sign_in(request, operation="restore.full")  # the secondary is replaced
        data = api_input(DrillStartInput, request)
        primary = hsm_get_for_user(user=request.user, hsm_id=data["primary"])
        secondary = hsm_get_for_user(user=request.user, hsm_id=data["secondary"])
        drill = services.drill_start(primary=primary, secondary=secondary, actor=request.user,
                                     request_id=request.id, container=data.get("container", ""),
                                     auth_mode=data["auth_mode"],
                                     confirm_name=data["confirm_name"])
        return Response(DrillOutput(drill).data, status=status.HTTP_202_ACCEPTED)


class DrillDetailApi(APIView):
    required_permission = "dr_app.view_backuprecord"

    @extend_schema(responses=DrillOutput)
    def get(self, request, drill_id: int):
        return Response(DrillOutput(selectors.drill_get(drill_id=drill_id)).data)
