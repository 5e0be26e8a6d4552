"""Pages: the HSM's Backups tab, the restore wizard, DR drills (list, report), an overview."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from dr_app import selectors, services
from dr_app.forms import BackupStartForm, DrillForm, RestoreForm, ScheduleForm
from dr_app.tables import backup_table, drill_table
from portal.errors import PortalError
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_get_for_user, hsm_list
from portal.gateway.views import HsmTabView
from portal.jobs.models import Job
from portal.permissions import PortalPermissionMixin


def _form_error(form) -> str:
    return " ".join(f"{form.fields[name].label or name if name in form.fields else ''}: "
                    f"{' '.join(errors)}".strip(": ") for name, errors in form.errors.items())


class BackupHomeView(PortalPermissionMixin, View):
    """Every HSM's latest backup, jobs needing attention, recent backup/restore jobs."""

    required_permission = "dr_app.view_backuprecord"

    def get(self, request):
        hsms = [{"hsm": hsm, "latest": selectors.backup_latest(hsm=hsm),
                 "schedules": selectors.schedule_list(hsm=hsm).filter(enabled=True).count()}
                for hsm in hsm_list()]
        return render(request, "dr_app/backup_home.html", {
            "hsms": hsms, "attention": selectors.jobs_needing_attention()[:50],
            "jobs": selectors.dr_job_list()[:20]})


class BackupListView(HsmTabView):
    """The HSM's Backups tab: catalog, start now, pre-backup check, schedules."""

    required_permission = {"GET": "dr_app.view_backuprecord", "POST": "dr_app.start_backup"}
    tab = "backups"
    template = "dr_app/backup_list.html"

    def tab_context(self, hsm):
        return {"table": backup_table(request=self.request, backups=selectors.backup_list(hsm=hsm)),
                "schedules": selectors.schedule_list(hsm=hsm),
                "jobs": selectors.dr_job_list(hsm=hsm)[:10],
                "form": BackupStartForm(), "schedule_form": ScheduleForm()}

    def post(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = BackupStartForm(request.POST)
        back = reverse("dr:backup-list", kwargs={"hsm_id": hsm.name})
        if not form.is_valid():
            messages.error(request, _form_error(form))
            return redirect(back)
        try:
            job = services.backup_start(hsm=hsm, actor=request.user, request_id=request.id,
                                        **form.cleaned_data)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(back)
        messages.success(request, f"Full backup of {hsm.name} queued (job {job.pk}).")
        return redirect(job)


class BackupPrecheckView(PortalPermissionMixin, View):
    required_permission = "dr_app.start_backup"

    def post(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = BackupStartForm(request.POST)
        if not form.is_valid():
            messages.error(request, _form_error(form))
        else:
            try:
                result = services.pre_backup_check(hsm=hsm, actor=request.user,
                                                   request_id=request.id, **form.cleaned_data)
            except PortalError as exc:
                result = {"ok": False, "message": exc.message}
            (messages.success if result["ok"] else messages.error)(
                request, "Pre-backup check: " + result["message"])
        return redirect("dr:backup-list", hsm_id=hsm.name)


class BackupRefreshView(PortalPermissionMixin, View):
    required_permission = "dr_app.start_backup"

    def post(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        try:
            added = services.catalog_refresh(
                hsm=hsm, container=request.POST.get("container", "")[:63], actor=request.user,
                request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Read the storage container: {added} new folder"
                                      f"{'' if added == 1 else 's'} in the catalog.")
        return redirect("dr:backup-list", hsm_id=hsm.name)


class ScheduleCreateView(PortalPermissionMixin, View):
    required_permission = "dr_app.start_backup"

    def post(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = ScheduleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "The schedule was not saved: " + _form_error(form))
        else:
            try:
                schedule = services.schedule_save(hsm=hsm, actor=request.user,
                                                  request_id=request.id, **form.cleaned_data)
            except PortalError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Saved schedule {schedule.name}: next backup "
                                          f"{schedule.next_run:%Y-%m-%d %H:%M} UTC.")
        return redirect(reverse("dr:backup-list", kwargs={"hsm_id": hsm.name}) + "#schedules")


class ScheduleDeleteView(PortalPermissionMixin, View):
    required_permission = "dr_app.start_backup"

    def post(self, request, hsm_id: str, schedule_id: int):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        schedule = selectors.schedule_get(hsm=hsm, schedule_id=schedule_id)
        services.schedule_delete(schedule=schedule, actor=request.user, request_id=request.id)
        messages.success(request, f"Deleted schedule {schedule.name}; its backups stay.")
        return redirect(reverse("dr:backup-list", kwargs={"hsm_id": hsm.name}) + "#schedules")


class RestoreView(PortalPermissionMixin, View):
    """The restore wizard: choose a backup and what to restore, check, then start."""

    required_permission = "dr_app.restore_backup"

    def page(self, request, hsm, form, check=None, status=200):
        return render(request, "dr_app/restore_create.html", {
            "hsm": hsm, "form": form, "check": check, "gate": services.GATE_CHECKS,
            "backups": selectors.backup_restorable()[:50]}, status=status)

    def get(self, request, hsm_id: str):
        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        initial = {"folder": request.GET.get("folder", "")[:128],
                   "container": request.GET.get("container", "")[:63]}
        return self.page(request, hsm, RestoreForm(initial=initial))

    def post(self, request, hsm_id: str):
        from portal.accounts.stepup import ensure_recent_sign_in

        hsm = hsm_get_for_user(user=request.user, hsm_id=hsm_id)
        form = RestoreForm(request.POST)
        if not form.is_valid():
            return self.page(request, hsm, form, status=400)
        data = form.cleaned_data
        try:
            if request.POST.get("action") == "check":
                check = services.pre_restore_check(
                    hsm=hsm, actor=request.user, request_id=request.id, folder=data["folder"],
                    container=data["container"], auth_mode=data["auth_mode"])
                return self.page(request, hsm, form, check=check)
            if data["mode"] == "full":
                ensure_recent_sign_in(request, operation="restore.full",
                                      next_url=reverse("dr:restore-create",
                                                       kwargs={"hsm_id": hsm.name}))
            result = services.restore_start(
                hsm_id=hsm.name, folder=data["folder"], container=data["container"],
                key_name=data["key_name"], auth_mode=data["auth_mode"], actor=request.user,
                request_id=request.id)
        except PortalError as exc:
            if getattr(exc, "code", "") == "step_up_required":
                raise
            form.add_error(None, exc.message)
            return self.page(request, hsm, form, status=exc.status)
        if isinstance(result, Job):
            messages.success(request, f"Restore into {hsm.name} queued (job {result.pk}): "
                                      "the readiness checks run first.")
            return redirect("dr:restore-detail", restore_id=result.pk)
        from portal.approvals.responses import page_pending

        return page_pending(request, result)


class DrillListView(PortalPermissionMixin, View):
    required_permission = {"GET": "dr_app.view_backuprecord", "POST": "dr_app.restore_backup"}

    def page(self, request, form, status=200):
        return render(request, "dr_app/drill_list.html", {
            "table": drill_table(request=request, drills=selectors.drill_list()),
            "form": form}, status=status)

    def get(self, request):
        return self.page(request, DrillForm(hsms=hsm_list()))

    def post(self, request):
        from portal.accounts.stepup import ensure_recent_sign_in

        # A drill replaces the secondary's keys: as a full restore, it needs a recent sign-in.
        ensure_recent_sign_in(request, operation="restore.full",
                              next_url=reverse("dr:drill-list"))
        form = DrillForm(request.POST, hsms=hsm_list())
        if not form.is_valid():
            return self.page(request, form, status=400)
        data = form.cleaned_data
        try:
            drill = services.drill_start(
                primary=HsmInstance.objects.get(name=data["primary"]),
                secondary=HsmInstance.objects.get(name=data["secondary"]),
                actor=request.user, request_id=request.id, container=data["container"],
                auth_mode=data["auth_mode"], confirm_name=data["confirm_name"])
        except PortalError as exc:
            for name, errors in (exc.fields or {}).items():
                form.add_error(name if name in form.fields else None, errors)
            if not exc.fields:
                form.add_error(None, exc.message)
            return self.page(request, form, status=exc.status)
        messages.success(request, f"DR drill {drill.pk} started.")
        return redirect(drill)


class DrillDetailView(PortalPermissionMixin, View):
    """One drill: live progress (htmx, every second) until its report."""

    required_permission = "dr_app.view_backuprecord"

    def get(self, request, drill_id: int):
        drill = selectors.drill_get(drill_id=drill_id)
        template = "dr_app/_drill_progress.html" if request.headers.get("HX-Request") else \
            "dr_app/drill_detail.html"
        return render(request, template, {"drill": drill, "job": drill.job,
                                          "report": drill.report or {}})


class RestoreDetailView(PortalPermissionMixin, View):
    """One restore: its readiness checks and the restore as live steps (htmx, every second)."""

    required_permission = "dr_app.view_backuprecord"

    def get(self, request, restore_id: int):
        job = selectors.restore_job_get(job_id=restore_id)
        template = "dr_app/_restore_steps.html" if request.headers.get("HX-Request") else \
            "dr_app/restore_detail.html"
        return render(request, template, {"job": job, "steps": selectors.restore_steps(job)})
