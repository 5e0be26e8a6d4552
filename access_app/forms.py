"""Local RBAC forms of the HTML door: they parse fields; the services validate the rest."""
from django import forms
from django.conf import settings

from portal.gateway.rbac import DATA_ACTIONS


PREFIX = "Microsoft.KeyVault/managedHsm/"

# What each data action lets a principal do, in words (the picker shows these, with the
# action's name beside them as Azure writes it).
ACTION_TITLES = {
    "keys/read/action": "Read keys and their public parts",
    "keys/write/action": "Update key properties and rotation policies",
    "keys/create": "Create keys",
    "keys/delete": "Delete keys",
    "keys/import/action": "Import keys",
    "keys/export/action": "Export keys",
    "keys/release/action": "Release keys (secure key release)",
    "keys/backup/action": "Back up a key",
    "keys/restore/action": "Restore a key from its backup",
    "keys/encrypt/action": "Encrypt",
    "keys/decrypt/action": "Decrypt",
    "keys/wrap/action": "Wrap keys",
    "keys/unwrap/action": "Unwrap keys",
    "keys/sign/action": "Sign",
    "keys/verify/action": "Verify signatures",
    "keys/deletedKeys/read/action": "Read deleted keys",
    "keys/deletedKeys/recover/action": "Recover deleted keys",
    "keys/deletedKeys/delete": "Purge deleted keys",
    "roleAssignments/read/action": "Read role assignments",
    "roleAssignments/write/action": "Create role assignments",
    "roleAssignments/delete/action": "Delete role assignments",
    "roleDefinitions/read/action": "Read role definitions",
    "roleDefinitions/write/action": "Create and update custom roles",
    "roleDefinitions/delete/action": "Delete custom roles",
    "securitydomain/download/action": "Download the security domain",
    "securitydomain/download/read": "Read the download's status",
    "securitydomain/upload/action": "Upload a security domain",
    "securitydomain/upload/read": "Read the upload's status",
    "securitydomain/transferkey/read": "Download the exchange key",
    "backup/start/action": "Start a full backup",
    "backup/status/action": "Read a backup's status",
    "restore/start/action": "Start a restore",
    "restore/status/action": "Read a restore's status",
    "rng/action": "Generate random numbers",
}


def action_short(action: str) -> str:
    """A data action without the Microsoft.KeyVault/managedHsm/ prefix."""
    return action[len(PREFIX):] if action.startswith(PREFIX) else action


def action_title(action: str) -> str:
    """What a data action (full or short name) allows, in words; its name when unknown."""
    return ACTION_TITLES.get(action_short(action), action_short(action))


def _action_choices():
    return [(a, action_short(a)) for a in DATA_ACTIONS]


def duration_field(label: str) -> forms.IntegerField:
    """Hours, 1 to ACCESS_MAX_DURATION_HOURS (read per form, so settings changes apply)."""
    limit = int(getattr(settings, "ACCESS_MAX_DURATION_HOURS", 72))
    return forms.IntegerField(label=label, min_value=1, max_value=limit, initial=min(8, limit),
                              help_text=f"1 to {limit} hours; then it is removed automatically.")


SCOPE_HELP = "/ (the whole HSM), /keys (every key) or /keys/<key name> (one key)."


class AccessRequestForm(forms.Form):
    hsm = forms.ChoiceField(label="HSM")
    role = forms.ChoiceField(label="Role")
    scope = forms.CharField(max_length=140, initial="/keys/", help_text=SCOPE_HELP)
    principal_id = forms.CharField(label="Principal object id", max_length=64,
                                   help_text="The user's, group's or service principal's "
                                             "object id in Microsoft Entra ID.")
    duration_hours = forms.IntegerField(label="Duration (hours)", min_value=1, initial=8)
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                                    help_text="Why this access is needed; approvers read it.")
    ticket = forms.CharField(label="Ticket reference", max_length=64, required=False)

    def __init__(self, *args, hsms=(), roles=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["hsm"].choices = [(h.name, h.name) for h in hsms]
        self.fields["role"].choices = [(r.name, r.role_name) for r in roles]
        self.fields["duration_hours"] = duration_field("Duration (hours)")


class AdoptForm(forms.Form):
    duration_hours = forms.IntegerField(label="Keep it for (hours)", min_value=1, initial=8)
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)
    ticket = forms.CharField(label="Ticket reference", max_length=64, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["duration_hours"] = duration_field("Keep it for (hours)")


class RoleDefinitionForm(forms.Form):
    role_name = forms.CharField(label="Role name", max_length=200,
                                help_text="Shown wherever the role is assigned, "
                                          "e.g. Payments key unwrapper.")
    description = forms.CharField(max_length=500, required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}),
                                  help_text="What the role is for; people asking for access "
                                            "and their approvers read it.")
    data_actions = forms.MultipleChoiceField(label="Data actions", choices=_action_choices,
                                             widget=forms.CheckboxSelectMultiple)
    not_data_actions = forms.MultipleChoiceField(
        label="Excluded data actions", choices=_action_choices, required=False,
        widget=forms.CheckboxSelectMultiple)


    def grouped(self, name: str) -> list[tuple[str, list]]:
        """The picker's checkboxes by area (keys, role assignments, security domain...), each
        with what it allows in words."""
        groups: dict[str, list] = {}
        for box in self[name]:
            area = box.choice_label.split("/", 1)[0]
            groups.setdefault(AREAS.get(area, area), []).append((box, action_title(box.choice_label)))
        return list(groups.items())

    @property
    def data_action_groups(self):
        return self.grouped("data_actions")

    @property
    def not_data_action_groups(self):
        return self.grouped("not_data_actions")


AREAS = {"keys": "Keys", "roleAssignments": "Role assignments",
         "roleDefinitions": "Role definitions", "securitydomain": "Security domain",
         "backup": "Backup", "restore": "Restore", "rng": "Random numbers"}


class ConfirmForm(forms.Form):
    confirm_name = forms.CharField(max_length=200, required=False)


class RevokeForm(forms.Form):
    justification = forms.CharField(max_length=2000, required=False)


class CampaignForm(forms.Form):
    hsm = forms.ChoiceField(label="HSM")
    name = forms.CharField(max_length=120, initial="Quarterly access review")
    days = forms.IntegerField(label="Open for (days)", min_value=1, max_value=90, initial=14)

    def __init__(self, *args, hsms=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["hsm"].choices = [(h.name, h.name) for h in hsms]


class ReviewAnswerForm(forms.Form):
    decision = forms.ChoiceField(choices=[("keep", "Keep"), ("revoke", "Revoke")])
    comment = forms.CharField(max_length=500, required=False)
