"""Timeline pages (a tab of the HSM and of the key, a page per principal), their export,
and the chain status page with "Verify now"."""
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from keys_app.views import KeyTabView
from portal.audit import timeline_export
from portal.audit.forms import PrincipalForm, TimelineFilterForm
from portal.audit.models import HsmAuditEvent
from portal.audit.timeline import TimelineScope, timeline_page
from portal.downloads import attachment
from portal.errors import BadInput
from portal.gateway.views import HsmTabView
from portal.permissions import PortalPermissionMixin

TIMELINE_PERMISSION = "audit.view_hsmauditevent"
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def timeline_context(request, scope: TimelineScope, export_url: str) -> dict:
    """The filter form, one page of the timeline and its paging links."""
    form = TimelineFilterForm(request.GET)
    if not form.is_valid():
        return {"form": form, "entries": [], "form_invalid": True, "scope": scope}
    entries, next_before = timeline_page(scope=scope, filters=form.to_filter(),
                                         before=form.cleaned_data.get("before"))
    query = request.GET.copy()
    query.pop("before", None)
    next_query = ""
    if next_before:
        query_next = query.copy()
        query_next["before"] = next_before.isoformat()
        next_query = query_next.urlencode()
    filtered = any(value for name, value in form.cleaned_data.items() if name != "before")
    return {"form": form, "entries": entries, "scope": scope, "filtered": filtered,
            "next_query": next_query, "query": query.urlencode(), "export_url": export_url,
            "is_first_page": not form.cleaned_data.get("before")}


def parsed_timeline_filter(params) -> TimelineFilterForm:
    form = TimelineFilterForm(params)
    if not form.is_valid():
        raise BadInput("Invalid timeline filter.", fields=form.errors.get_json_data())
    return form


def export_download(request, scope: TimelineScope, fmt: str):
    form = parsed_timeline_filter(request.GET)
    lines = timeline_export.timeline_export(actor=request.user, scope=scope,
                                            filters=form.to_filter(), fmt=fmt,
                                            request_id=request.id)
    name = "-".join(part for part in (scope.kind, scope.hsm, scope.key,
                                      scope.principal.replace(":", "")) if part)
    return attachment(lines, content_type=EXPORT_TYPES[fmt], filename=f"timeline-{name}.{fmt}")


def scope_from_params(params) -> TimelineScope:
    kind = params.get("scope", "")
    if kind == "key" and params.get("hsm") and params.get("key"):
        return TimelineScope("key", hsm=params["hsm"][:64], key=params["key"][:127])
    if kind == "hsm" and params.get("hsm"):
        return TimelineScope("hsm", hsm=params["hsm"][:64])
    if kind == "principal":
        form = PrincipalForm({"principal": params.get("principal", "")})
        if form.is_valid():
            return TimelineScope("principal", principal=form.cleaned_data["principal"].lower())
    raise BadInput("Name the timeline: scope=key with hsm and key, scope=hsm with hsm, or "
                   "scope=principal with principal.")


class HsmTimelineView(HsmTabView):
    required_permission = TIMELINE_PERMISSION
    tab = "timeline"
    template = "audit/hsm_timeline.html"

    def tab_context(self, hsm):
        export = reverse("trail:timeline-export") + f"?scope=hsm&hsm={hsm.name}"
        return timeline_context(self.request, TimelineScope("hsm", hsm=hsm.name), export)


class KeyTimelineView(KeyTabView):
    required_permission = TIMELINE_PERMISSION
    tab = "timeline"

    def tab_context(self, record):
        export = (reverse("trail:timeline-export")
                  + f"?scope=key&hsm={self.hsm.name}&key={record.name}")
        return timeline_context(self.request, TimelineScope("key", hsm=self.hsm.name,
                                                            key=record.name), export)


class PrincipalTimelineView(PortalPermissionMixin, View):
    required_permission = TIMELINE_PERMISSION

    def get(self, request, principal: str):
        form = PrincipalForm({"principal": principal})
        if not form.is_valid():
            raise Http404("No such principal id.")
        principal = form.cleaned_data["principal"].lower()
        scope = TimelineScope("principal", principal=principal)
        export = reverse("trail:timeline-export") + f"?scope=principal&principal={principal}"
        return render(request, "audit/principal_timeline.html",
                      {"principal": principal, "display": principal_display(principal),
                       **timeline_context(request, scope, export)})


def principal_display(principal: str) -> str:
    """The portal user name(s) behind a principal id, for the page's title."""
    from django.contrib.auth import get_user_model

    from portal.audit.timeline import _principal_users

    names = list(get_user_model().objects.filter(pk__in=_principal_users(principal))
                 .values_list("username", flat=True)[:3])
    return ", ".join(names)


class TimelineIndexView(PortalPermissionMixin, View):
    """Where timelines start: a principal by id, or an HSM from the list."""

    required_permission = TIMELINE_PERMISSION

    def get(self, request):
        from portal.gateway.models import HsmInstance

        form = PrincipalForm(request.GET or None)
        if form.is_bound and form.is_valid():
            return redirect("trail:principal-timeline",
                            principal=form.cleaned_data["principal"].lower())
        recent = (HsmAuditEvent.objects.exclude(caller_oid="").order_by("-time")
                  .values_list("caller_oid", flat=True)[:200])
        return render(request, "audit/timeline_index.html", {
            "form": form, "hsms": HsmInstance.objects.order_by("name"),
            "callers": list(dict.fromkeys(recent))[:10]}, status=400 if form.errors else 200)


class TimelineExportView(PortalPermissionMixin, View):
    required_permission = "audit.export_auditevent"

    def get(self, request):
        fmt = request.GET.get("export", "csv")
        if fmt not in EXPORT_TYPES:
            raise BadInput("Export format must be 'csv' or 'json'.")
        return export_download(request, scope_from_params(request.GET), fmt)


class ChainStatusView(PortalPermissionMixin, View):
    required_permission = {"GET": "audit.view_auditverification",
                           "POST": "audit.add_auditverification"}

    def get(self, request):
        from portal.audit.selectors import chain_status

        data = chain_status()
        return render(request, "audit/chain_status.html", {**data, "facts": chain_facts(data)})

    def post(self, request):
        from portal.audit.checkpoints import audit_verify_start

        job = audit_verify_start(actor=request.user, request_id=request.id)
        messages.success(request, "Verification started: a job re-computes the whole chain "
                                  "and checks every signed checkpoint.")
        return redirect(job.get_absolute_url())



def chain_facts(data: dict) -> list:
    """The chain status's Essentials: the last verification first, then the chain."""
    from portal.objects import Fact

    last = data["last"]
    oldest = data["oldest"]
    if last is None:
        facts = [Fact("Last verification", "Not verified yet", kind="status", tone="muted")]
    else:
        facts = [
            Fact("Last verification", "Intact" if last.ok else "Broken", kind="status",
                 tone="ok" if last.ok else "bad", id="last-result"),
            Fact("Verified", last.started, kind="time"),
            Fact("Run by", last.actor_name or last.trigger),
            Fact("Rows verified", f"{last.rows:,}" + (f" (from seq {last.first_seq})"
                                                      if last.first_seq else "")),
            Fact("First bad seq", last.first_bad_seq, note="None"),
            Fact("Reason", last.reason, note="—"),
            Fact("Signed checkpoints checked", last.checkpoints),
        ]
    facts += [
        Fact("Chain head", f"seq {data['head_seq']:,}"),
        Fact("Head hash", data["head_hash"], kind="code"),
        Fact("Oldest kept row", f"seq {oldest['seq']:,}, {oldest['time']:%Y-%m-%d}"
             if oldest else ""),
        Fact("Retention", f"{data['retention_days']} days (never under 180)"),
        Fact("HSM audit events read", f"{data['hsm_events']:,} (source: "
                                      f"{data['hsm_audit_source']})"),
        Fact("HSM logs last read", data["last_ingest"], kind="time", note="Not yet"),
    ]
    return facts
