"""Forms of the security-domain pages: field shapes and bounds only; the rules (3-10
certificates, quorum, certificate checks) are the services'."""
from django import forms

MAX_CUSTODIANS = 10
PEM_ACCEPT = ".pem,.cer,.crt,application/x-pem-file"


class ActivateForm(forms.Form):
    """The wrapping certificates of 3-10 custodians and the quorum of an activation."""

    quorum = forms.IntegerField(min_value=2, max_value=10, initial=2,
                                help_text="How many custodians' keys a recovery needs.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for index in range(MAX_CUSTODIANS):
            required = index < 3
            self.fields[f"name_{index}"] = forms.CharField(
                max_length=100, required=required, label=f"Custodian {index + 1}")
            self.fields[f"email_{index}"] = forms.EmailField(
                required=False, label=f"Email of custodian {index + 1}")
            self.fields[f"certificate_{index}"] = forms.FileField(
                required=required, label=f"Certificate of custodian {index + 1} (PEM)",
                widget=forms.ClearableFileInput(attrs={"accept": PEM_ACCEPT}))

    def rows(self) -> list[dict]:
        """One dict per custodian line for the template."""
        return [{"index": i, "name": self[f"name_{i}"], "email": self[f"email_{i}"],
                 "certificate": self[f"certificate_{i}"]} for i in range(MAX_CUSTODIANS)]

    @property
    def custodians_beyond_three(self) -> bool:
        """Whether lines 4-10 hold anything (their section then opens again)."""
        return any(self.data.get(f"name_{i}") or self.files.get(f"certificate_{i}")
                   for i in range(3, MAX_CUSTODIANS))

    def custodians(self) -> list[dict]:
        """The filled lines as the service takes them (name, email, certificate bytes)."""
        found = []
        for index in range(MAX_CUSTODIANS):
            name = self.cleaned_data.get(f"name_{index}") or ""
            upload = self.cleaned_data.get(f"certificate_{index}")
            if not name and upload is None:
                continue
            found.append({"name": name, "email": self.cleaned_data.get(f"email_{index}") or "",
                          "certificate": upload.read() if upload else b""})
        return found


class UploadForm(forms.Form):
    file = forms.FileField(label="Security domain prepared by the custodians",
                           help_text="The file az keyvault security-domain restore-blob wrote "
                                     "for this HSM's exchange key.")
    justification = forms.CharField(max_length=1000, required=False,
                                    widget=forms.Textarea(attrs={"rows": 2}),
                                    help_text="Why: the approvers read this.")
    ticket = forms.CharField(max_length=100, required=False, label="Change ticket")
    source_hsm = forms.ChoiceField(
        required=False, label="Saved from HSM (optional)",
        help_text="Its custodians and quorum are copied to this HSM's custody ledger once the "
                  "restore succeeds.")

    def __init__(self, *args, hsm=None, **kwargs):
        super().__init__(*args, **kwargs)
        from portal.gateway.selectors import hsm_list

        self.fields["source_hsm"].choices = [("", "Not registered here / unknown")] + [
            (other.name, other.name) for other in hsm_list() if hsm is None or other.pk != hsm.pk]


class CustodianAddForm(forms.Form):
    name = forms.CharField(max_length=100)
    email = forms.EmailField(required=False)
    certificate = forms.FileField(label="Wrapping certificate (PEM)",
                                  widget=forms.ClearableFileInput(attrs={"accept": PEM_ACCEPT}))


class QuorumForm(forms.Form):
    quorum = forms.IntegerField(min_value=2, max_value=10)


class ProveForm(forms.Form):
    """The two files of a proof of possession: the challenge as downloaded, its signature."""

    challenge_file = forms.FileField(label="Challenge file (as downloaded)",
                                     widget=forms.ClearableFileInput(attrs={"accept": ".txt,text/plain"}))
    signature = forms.FileField(label="Signature file",
                                help_text="openssl dgst -sha256 -sign custodian.key "
                                          "-out challenge.sig custody-challenge-N.txt")
