"""The audit filter, parsed the same way for the page and the API."""
from django import forms

from portal.audit.models import AuditEvent
from portal.audit.selectors import AuditFilter


class AuditFilterForm(forms.Form):
    """Query-string filters of the audit trail; every field optional."""

    actor = forms.CharField(required=False, max_length=150)
    action = forms.CharField(required=False, max_length=64)
    target = forms.CharField(required=False, max_length=512)
    outcome = forms.ChoiceField(required=False,
                                choices=[("", "any")] + list(AuditEvent.Outcome.choices))
    since = forms.DateTimeField(required=False, help_text="UTC, e.g. 2026-11-01 00:00")
    until = forms.DateTimeField(required=False)
    request_id = forms.CharField(required=False, max_length=64)
    client_request_id = forms.CharField(required=False, max_length=64,
                                        label="Client request id")
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("'since' must be before 'until'.")
        return data

    def to_filter(self) -> AuditFilter:
        """The validated filter (call after is_valid())."""
        data = self.cleaned_data
        return AuditFilter(actor=data.get("actor") or "", action=data.get("action") or "",
                           target=data.get("target") or "", outcome=data.get("outcome") or "",
                           since=data.get("since"), until=data.get("until"),
                           request_id=data.get("request_id") or "",
                           client_request_id=data.get("client_request_id") or "")


class TimelineFilterForm(forms.Form):
    """Filters of a timeline (page, API, export); every field optional."""

    actor = forms.CharField(required=False, max_length=256,
                            help_text="A portal user name, or the HSM caller's UPN, object id or app id")
    action = forms.CharField(required=False, max_length=64, label="Action (prefix)",
                             help_text="A portal action (key.) or an HSM operation (KeyCreate)")
    target = forms.CharField(required=False, max_length=512, label="Target")
    since = forms.DateTimeField(required=False, label="Since (UTC)")
    until = forms.DateTimeField(required=False, label="Until (UTC)")
    source = forms.ChoiceField(required=False, choices=[("", "Portal and HSM"),
                                                        ("portal", "Portal only"),
                                                        ("hsm", "HSM only")])
    before = forms.DateTimeField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("'since' must be before 'until'.")
        return data

    def to_filter(self):
        from portal.audit.timeline import TimelineFilter

        data = self.cleaned_data
        return TimelineFilter(actor=data.get("actor") or "", action=data.get("action") or "",
                              target=data.get("target") or "", since=data.get("since"),
                              until=data.get("until"), source=data.get("source") or "")


class PrincipalForm(forms.Form):
    principal = forms.RegexField(regex=r"^(local:\d{1,12}|[0-9A-Fa-f-]{36})$", max_length=64,
                                 label="Principal (object id, or local:<id>)",
                                 error_messages={"invalid": "Enter a directory object id "
                                                            "(a GUID) or local:<number>."})
