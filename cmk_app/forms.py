"""Field-level validation of the CMK wizard and the HSM resource's forms."""
from django import forms

from cmk_app.services import IDENTITY_NAME, MAX_DESCRIPTION, REGION


class AttachForm(forms.Form):
    """The wizard's choices: key, resource, identity (new or existing), grant."""

    key_name = forms.ChoiceField(label="Key")
    resource_id = forms.ChoiceField(label="Resource")
    identity_mode = forms.ChoiceField(label="Managed identity", initial="create",
                                      choices=[("create", "Create a new user-assigned identity"),
                                               ("existing", "Use an existing identity")],
                                      widget=forms.RadioSelect)
    identity_name = forms.CharField(label="New identity's name", required=False, max_length=128,
                                    help_text="Empty: id-<resource>-cmk, in the resource's group")
    identity_id = forms.ChoiceField(label="Existing identity", required=False)
    grant = forms.BooleanField(label="Grant the role", required=False, initial=True,
                               help_text="Managed HSM Crypto Service Encryption User at "
                                         "/keys/<key> only (least privilege)")

    def __init__(self, *args, keys=(), resources=(), identities=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key_name"].choices = [(k, k) for k in keys]
        self.fields["resource_id"].choices = resources
        self.fields["identity_id"].choices = [("", "—")] + list(identities)

    def clean(self):
        data = super().clean()
        if data.get("identity_mode") == "existing" and not data.get("identity_id"):
            self.add_error("identity_id", "Pick the identity to use.")
        name = data.get("identity_name") or ""
        if data.get("identity_mode") == "create" and name and not IDENTITY_NAME.match(name):
            self.add_error("identity_name", "3-128 letters, digits, - and _.")
        return data


class ReasonForm(forms.Form):
    justification = forms.CharField(required=False, max_length=2000)
    ticket = forms.CharField(required=False, max_length=100)


class RegionForm(forms.Form):
    region = forms.CharField(max_length=40, label="Region")

    def clean_region(self):
        value = self.cleaned_data["region"].replace(" ", "").lower()
        if not REGION.match(value):
            raise forms.ValidationError("An Azure region name, such as northeurope.")
        return value


class PrivateEndpointForm(ReasonForm):
    status = forms.ChoiceField(choices=[("Approved", "Approve"), ("Rejected", "Reject")])
    description = forms.CharField(required=False, max_length=MAX_DESCRIPTION)
