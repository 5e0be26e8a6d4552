"""Forms of the backup, restore and drill pages (bounds here; rules in services)."""
from django import forms

from dr_app.models import AuthMode

AUTH_HELP = ("A SAS token the portal makes for this operation only (short-lived, least "
             "permissions), or the HSM's user-assigned managed identity.")


class ContainerForm(forms.Form):
    """Shows the default container as the empty field's placeholder (read at request time)."""

    def __init__(self, *args, **kwargs):
        from django.conf import settings

        super().__init__(*args, **kwargs)
        if "container" in self.fields:
            self.fields["container"].widget.attrs["placeholder"] = settings.DR_BACKUP_CONTAINER


class BackupStartForm(ContainerForm):
    container = forms.CharField(max_length=63, required=False,
                                help_text="Blob container; empty for the default.")
    auth_mode = forms.ChoiceField(choices=AuthMode.choices, initial=AuthMode.SAS,
                                  label="Storage access", help_text=AUTH_HELP)


class ScheduleForm(ContainerForm):
    name = forms.CharField(max_length=64, initial="nightly")
    every_hours = forms.IntegerField(min_value=1, max_value=168, initial=24,
                                     label="Every (hours)", help_text="1 to 168.")
    at_minute = forms.IntegerField(min_value=0, max_value=59, initial=0,
                                   label="At minute (UTC)", help_text="0 to 59.")
    container = forms.CharField(max_length=63, required=False)
    auth_mode = forms.ChoiceField(choices=AuthMode.choices, initial=AuthMode.SAS,
                                  label="Storage access")
    retention_days = forms.IntegerField(min_value=1, max_value=3650, required=False,
                                        label="Delete after (days)",
                                        help_text="Empty: keep regardless of age.")
    keep_last = forms.IntegerField(min_value=1, max_value=1000, required=False,
                                   label="Keep the last", help_text="Empty: no count limit.")


class RestoreForm(ContainerForm):
    MODES = [("selective", "One key (selective restore)"),
             ("full", "The whole HSM (full restore: every key is replaced)")]

    folder = forms.CharField(max_length=128, label="Backup folder",
                             help_text="e.g. mhsm-primary-2026113009151234")
    container = forms.CharField(max_length=63, required=False)
    mode = forms.ChoiceField(choices=MODES, initial="selective", widget=forms.RadioSelect,
                             label="What to restore")
    key_name = forms.CharField(max_length=127, required=False, label="Key name",
                               help_text="For a selective restore; the key must not exist "
                                         "(purge a deleted one first).")
    auth_mode = forms.ChoiceField(choices=AuthMode.choices, initial=AuthMode.SAS,
                                  label="Storage access", help_text=AUTH_HELP)

    def clean(self):
        data = super().clean()
        if data.get("mode") == "selective" and not data.get("key_name"):
            self.add_error("key_name", "Name the key to restore.")
        if data.get("mode") == "full":
            data["key_name"] = ""
        return data


class DrillForm(ContainerForm):
    primary = forms.ChoiceField(choices=(), label="Primary (backed up)")
    secondary = forms.ChoiceField(choices=(), label="Secondary (restored into)")
    container = forms.CharField(max_length=63, required=False)
    auth_mode = forms.ChoiceField(choices=AuthMode.choices, initial=AuthMode.SAS,
                                  label="Storage access")
    confirm_name = forms.CharField(max_length=24, label="Type the secondary's name",
                                   help_text="Its keys and role assignments are replaced by "
                                             "the primary's (after a safety backup).")

    def __init__(self, *args, hsms=(), **kwargs):
        super().__init__(*args, **kwargs)
        names = [(h.name, h.name) for h in hsms]
        self.fields["primary"].choices = names
        self.fields["secondary"].choices = names
        primaries = [h.name for h in hsms if h.role == "primary"]
        secondaries = [h.name for h in hsms if h.role == "secondary"]
        if primaries:
            self.fields["primary"].initial = primaries[0]
        if secondaries:
            self.fields["secondary"].initial = secondaries[0]
