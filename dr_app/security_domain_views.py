"""Security-domain pages: the HSM's "Security domain" tab (activation status, custody
ledger), activation, the recovery wizard (exchange key, then upload) and a custodian's page
(prove possession). Each action calls one service."""
from __future__ import annotations

import json
import re

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from dr_app import security_domain as services
from dr_app.models_sd import Custodian, CustodyChallenge, SecurityDomainState
from dr_app.security_domain_forms import (ActivateForm, CustodianAddForm, ProveForm, QuorumForm,
                                          UploadForm)
from dr_app.security_domain_selectors import (custodian_get, custodian_list, custody_findings,
                                              custody_state, sd_download_pending, sd_jobs,
                                              sd_state_get)
from portal.accounts.stepup import ensure_recent_sign_in
from portal.approvals.responses import page_pending
from portal.downloads import attachment
from portal.errors import BadInput, PortalError
from portal.gateway.views import HsmObjectMixin
from portal.objects import Fact
from portal.permissions import PortalPermissionMixin
from portal.tables import Column, Empty, Table, TableSpec, table_register

CUSTODIANS = table_register(TableSpec("sd-custodians", caption="Custody ledger", columns=(
    Column("name", "Custodian", hideable=False),
    Column("fingerprint", "Certificate (SHA-256)"),
    Column("subject", "Subject"),
    Column("expires", "Certificate expires (UTC)"),
    Column("proven", "Last proven (UTC)"),
    Column("state", "Custody"),
)))

SD_HSMS = table_register(TableSpec("sd-hsms", caption="Security domains", columns=(
    Column("hsm", "HSM", hideable=False),
    Column("activation", "Activation"),
    Column("checked", "Checked (UTC)"),
    Column("quorum", "Quorum", numeric=True),
    Column("custodians", "Custodians", numeric=True),
    Column("proven", "Proven custody", numeric=True),
    Column("warnings", "Custody warnings"),
)))

ACTIVATION_TONES = {"active": "ok", "not_activated": "warn", "in_progress": "warn",
                    "failed": "bad", "unknown": "muted"}


class SdMixin(HsmObjectMixin):
    """An HSM's security-domain pages: the HSM header, Essentials and tabs around them."""

    def page(self, template: str, context: dict | None = None, *, status: int = 200):
        from portal.gateway.views import hsm_facts, hsm_tabs

        return render(self.request, template, {
            "hsm": self.hsm, "tab": "security-domain", "facts": hsm_facts(self.hsm),
            "tabs": hsm_tabs(user=self.request.user, hsm=self.hsm, current="security-domain"),
            **(context or {})}, status=status)

    def overview_url(self) -> str:
        return reverse("dr:sd-overview", kwargs={"hsm_id": self.hsm_id})

    def recover_url(self) -> str:
        return reverse("dr:sd-recover", kwargs={"hsm_id": self.hsm_id})


def _state_facts(state: SecurityDomainState, status_error: str) -> list[Fact]:
    return [
        Fact("Activation", state.get_activation_display(), kind="status",
             tone=ACTIVATION_TONES.get(state.activation, "muted"), id="sd-activation"),
        *([Fact("Status detail", status_error or state.activation_detail)]
          if status_error or state.activation_detail else []),
        Fact("Checked", state.checked, kind="time", note="Not checked yet"),
        Fact("Quorum", f"{state.quorum} custodians" if state.quorum else "",
             note="Not recorded", id="sd-quorum"),
        Fact("Activated by the portal", state.activated, kind="time", note="—"),
        Fact("Last recovery", state.recovered, kind="time", note="None"),
    ]


def custodian_table(*, request, hsm) -> Table:
    rows = list(custodian_list(hsm=hsm))
    for row in rows:
        row.tone, row.words = custody_state(row)
    may_add = request.user.has_perm("dr_app.change_custodian")
    return Table(spec=CUSTODIANS, rows=rows, row_template="dr_app/_sd_custodian_row.html",
                 request=request, count=len(rows), noun=("custodian", "custodians"),
                 label=f"Custodians of {hsm.name}",
                 empty=Empty("No custodians are recorded for this HSM. Activating it through "
                             "the portal records them; for an HSM activated elsewhere, add each "
                             "custodian and their wrapping certificate.",
                             "Add a custodian" if may_add else "",
                             reverse("dr:sd-custodian-add", kwargs={"hsm_id": hsm.name})
                             if may_add else ""))


class SdHomeView(PortalPermissionMixin, View):
    """Every HSM's security domain at a glance: activation as last seen, quorum, custody."""

    required_permission = "dr_app.view_custodian"

    def get(self, request):
        from dr_app.security_domain_selectors import sd_hsm_overview

        rows = sd_hsm_overview(user=request.user)
        for row in rows:
            row.tone = ACTIVATION_TONES.get(row.state.activation, "muted")
        table = Table(spec=SD_HSMS, rows=rows, row_template="dr_app/_sd_hsm_row.html",
                      request=request, count=len(rows), noun=("HSM", "HSMs"),
                      label="Security domain of each HSM",
                      empty=Empty("No HSM is registered yet."))
        return render(request, "dr_app/sd_home.html", {
            "table": table, "proof_days": services.custody_proof_days(),
            "warnings": sum(len(row.warnings) for row in rows)})


class SdOverviewView(SdMixin, View):
    """The HSM's Security domain tab: activation status (asked live), quorum, the custody
    ledger with its warnings, the security domain waiting for download, recent jobs."""

    required_permission = "dr_app.view_custodian"

    def get(self, request, hsm_id):
        status_error = ""
        try:
            state = services.security_domain_status_refresh(hsm=self.hsm)
        except PortalError as exc:
            state = sd_state_get(hsm=self.hsm)
            status_error = f"The HSM could not be asked just now: {exc.message}"
        return self.page("dr_app/sd_overview.html", {
            "state": state, "sd_facts": _state_facts(state, status_error),
            "status_error": status_error,
            "table": custodian_table(request=request, hsm=self.hsm),
            "findings": custody_findings(hsm=self.hsm),
            "proof_days": services.custody_proof_days(),
            "pending_download": sd_download_pending(hsm=self.hsm, user=request.user),
            "jobs": sd_jobs(hsm=self.hsm), "quorum_form": QuorumForm(
                initial={"quorum": state.quorum or 2})})


class SdActivateView(SdMixin, View):
    required_permission = "dr_app.manage_security_domain"

    def get(self, request, hsm_id, form=None, status=200):
        return self.page("dr_app/sd_activate.html", {"form": form or ActivateForm(),
                                                      "state": sd_state_get(hsm=self.hsm)},
                         status=status)

    def post(self, request, hsm_id):
        form = ActivateForm(request.POST, request.FILES)
        if not form.is_valid():
            messages.error(request, "The activation did not start: correct the marked fields.")
            return self.get(request, hsm_id, form=form, status=400)
        try:
            job = services.security_domain_activate_start(
                hsm=self.hsm, custodians=form.custodians(), quorum=form.cleaned_data["quorum"],
                actor=request.user, request_id=request.id)
        except PortalError as exc:
            for field, errors in exc.fields.items():
                match = re.fullmatch(r"custodians\.(\d+)\.(name|certificate)", field)
                name = f"{match[2]}_{match[1]}" if match else field
                form.add_error(name if name in form.fields else None, errors)
            messages.error(request, exc.message)
            return self.get(request, hsm_id, form=form, status=exc.status)
        messages.success(request, f"Activation of {self.hsm.name} started (job {job.pk}). When "
                                  "it finishes, download the security domain from the HSM's "
                                  "Security domain tab: it is offered once.")
        return redirect(job)


class SdDownloadView(SdMixin, View):
    """The activated HSM's security domain, once, to the admin who activated it."""

    required_permission = "dr_app.manage_security_domain"

    def post(self, request, hsm_id, job_id):
        try:
            blob, filename = services.security_domain_download_fetch(
                hsm=self.hsm, job_id=job_id, actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(self.overview_url())
        response = attachment(blob, content_type="application/json", filename=filename)
        response["Cache-Control"] = "no-store"
        return response


class SdRecoverView(SdMixin, View):
    """The recovery wizard: 1. download the exchange key, 2. the custodians prepare the
    security domain offline, 3. upload it (approval and a recent sign-in needed)."""

    required_permission = "dr_app.manage_security_domain"

    def get(self, request, hsm_id, form=None, status=200):
        return self.page("dr_app/sd_recover.html", {
            "state": sd_state_get(hsm=self.hsm), "form": form or UploadForm(hsm=self.hsm),
            "jobs": [job for job in sd_jobs(hsm=self.hsm)
                     if job.kind == services.UPLOAD_KIND]}, status=status)


class SdExchangeKeyView(SdMixin, View):
    """Init-recovery: the exchange key as a file (PEM, or JWK with ?format=jwk)."""

    required_permission = "dr_app.manage_security_domain"

    def post(self, request, hsm_id):
        try:
            key = services.security_domain_recovery_init(hsm=self.hsm, actor=request.user,
                                                         request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(self.recover_url())
        if request.POST.get("format") == "jwk":
            return attachment(json.dumps(key["jwk"], indent=2), content_type="application/json",
                              filename=f"{self.hsm.name}-exchange-key.json")
        return attachment(key["pem"], content_type="application/x-pem-file",
                          filename=f"{self.hsm.name}-exchange-key.pem")


class SdUploadView(SdMixin, View):
    required_permission = "dr_app.manage_security_domain"

    def post(self, request, hsm_id):
        # Outside the try: a stale sign-in goes to re-authenticate, not to a flash message.
        ensure_recent_sign_in(request, operation=services.UPLOAD_OPERATION)
        form = UploadForm(request.POST, request.FILES, hsm=self.hsm)
        if not form.is_valid():
            messages.error(request, "Nothing was uploaded: choose the prepared file.")
            return SdRecoverView.get(self, request, hsm_id, form=form, status=400)
        blob = form.cleaned_data["file"].read()
        try:
            result = services.security_domain_upload_request(
                hsm=self.hsm, blob=blob, actor=request.user, request_id=request.id,
                justification=form.cleaned_data["justification"],
                ticket=form.cleaned_data["ticket"], source_hsm=form.cleaned_data["source_hsm"])
        except PortalError as exc:
            messages.error(request, exc.message)
            return SdRecoverView.get(self, request, hsm_id, form=form, status=exc.status)
        # Always a pending approval: the upload job starts only when it is approved.
        return page_pending(request, result)


class SdQuorumView(SdMixin, View):
    required_permission = "dr_app.change_custodian"

    def post(self, request, hsm_id):
        form = QuorumForm(request.POST)
        try:
            if not form.is_valid():
                raise BadInput("The quorum must be from 2 to 10.")
            services.quorum_record(hsm=self.hsm, quorum=form.cleaned_data["quorum"],
                                   actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Recorded a quorum of {form.cleaned_data['quorum']}.")
        return redirect(self.overview_url())


class SdCustodianAddView(SdMixin, View):
    required_permission = "dr_app.change_custodian"

    def get(self, request, hsm_id, form=None, status=200):
        return self.page("dr_app/sd_custodian_add.html", {"form": form or CustodianAddForm()},
                         status=status)

    def post(self, request, hsm_id):
        form = CustodianAddForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.get(request, hsm_id, form=form, status=400)
        try:
            custodian = services.custodian_add(
                hsm=self.hsm, name=form.cleaned_data["name"], email=form.cleaned_data["email"],
                certificate=form.cleaned_data["certificate"].read(), actor=request.user,
                request_id=request.id)
        except PortalError as exc:
            for field, errors in exc.fields.items():
                form.add_error(field if field in form.fields else None, errors)
            return self.get(request, hsm_id, form=form, status=exc.status)
        messages.success(request, f"Added custodian {custodian.name}. Ask them to prove "
                                  "custody now.")
        return redirect(custodian)


class SdCustodianMixin(SdMixin):
    def custodian(self, custodian_id: int) -> Custodian:
        return custodian_get(hsm=self.hsm, custodian_id=custodian_id)


class SdCustodianView(SdCustodianMixin, View):
    """One custodian: their certificate, custody state, and the proof-of-possession steps."""

    required_permission = "dr_app.view_custodian"

    def get(self, request, hsm_id, custodian_id, form=None, status=200):
        custodian = self.custodian(custodian_id)
        tone, words = custody_state(custodian)
        facts = [
            Fact("Custodian", custodian.name),
            Fact("Email", custodian.email, note="—"),
            Fact("Custody", words, kind="status", tone=tone, id="custody-state"),
            Fact("Last proven", custodian.last_proven, kind="time", note="Never"),
            Fact("Certificate SHA-256", custodian.fingerprint_sha256, kind="code"),
            Fact("Subject", custodian.subject),
            Fact("Certificate expires", custodian.not_after, kind="time"),
            Fact("Key", f"RSA {custodian.key_bits} bits"),
            Fact("Status", custodian.get_status_display()),
            Fact("Added", custodian.added, kind="time"),
        ]
        return self.page("dr_app/sd_custodian.html", {
            "custodian": custodian, "custodian_facts": facts, "form": form or ProveForm(),
            "proof_days": services.custody_proof_days()}, status=status)


class SdChallengeView(SdCustodianMixin, View):
    """Issue a challenge and hand it over as the file the custodian signs."""

    required_permission = "dr_app.change_custodian"

    def post(self, request, hsm_id, custodian_id):
        custodian = self.custodian(custodian_id)
        try:
            challenge = services.custody_challenge_issue(custodian=custodian, actor=request.user,
                                                         request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(custodian)
        return attachment(services.challenge_text(challenge), content_type="text/plain",
                          filename=f"custody-challenge-{challenge.pk}.txt")


_NONCE = re.compile(rb"^nonce: ([0-9a-f]{64})$", re.M)


class SdProveView(SdCustodianMixin, View):
    """Check the custodian's signature over the challenge file they signed."""

    required_permission = "dr_app.change_custodian"

    def post(self, request, hsm_id, custodian_id):
        custodian = self.custodian(custodian_id)
        form = ProveForm(request.POST, request.FILES)
        found = _NONCE.search(form.cleaned_data["challenge_file"].read(4096)) \
            if form.is_valid() else None
        challenge = CustodyChallenge.objects.filter(
            custodian=custodian, nonce=found[1].decode()).first() if found else None
        signature = form.cleaned_data.get("signature") if found else None
        if challenge is None or signature is None:
            messages.error(request, "Choose the challenge file the custodian signed (as "
                                    "downloaded) and their signature file.")
            return redirect(custodian)
        try:
            services.custody_prove(custodian=custodian, challenge_id=challenge.pk,
                                   signature=signature.read(4097), actor=request.user,
                                   request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{custodian.name} proved custody of their key.")
        return redirect(custodian)


class SdCustodianRetireView(SdCustodianMixin, View):
    required_permission = "dr_app.change_custodian"

    def post(self, request, hsm_id, custodian_id):
        custodian = self.custodian(custodian_id)
        if request.POST.get("confirm_name", "").strip() != custodian.name:
            messages.error(request, "Type the custodian's name to retire them.")
            return redirect(custodian)
        try:
            services.custodian_retire(custodian=custodian, actor=request.user,
                                      request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect(custodian)
        messages.success(request, f"Retired custodian {custodian.name}.")
        return redirect(self.overview_url())
