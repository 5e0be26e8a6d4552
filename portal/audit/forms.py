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
