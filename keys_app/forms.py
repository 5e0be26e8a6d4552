"""Key forms of the HTML door; they parse fields, and the services validate the rest."""
import re

from django import forms

from keys_app import rotation
from keys_app.models import KeyRecord
from keys_app.spec import KEY_TYPES, PRESETS, tags_parse
from portal.errors import BadInput

ALL_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import"]
DATETIME = {"widget": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            "required": False, "help_text": "UTC"}


# The policy's own words, as the form calls them.
POLICY_WORDS = {"time_after_create": "a trigger after creation",
                "time_before_expiry": "a trigger before expiry", "expires_after": "Expires after"}


def _in_form_words(text: str) -> str:
    text = re.sub(r"^lifetime_actions\[\d+\][.\w]*: ", "", text)
    for word, phrase in POLICY_WORDS.items():
        text = text.replace(word, phrase)
    return text[:1].upper() + text[1:]


class RotationFields(forms.Form):
    """A rotation policy as flat fields; a bad value is a field error, never dropped."""

    expires_after = forms.CharField(required=False, max_length=100, label="Expires after",
                                    help_text="e.g. P2Y")
    rotate_after_create = forms.CharField(required=False, max_length=100,
                                          label="Rotate after creation", help_text="e.g. P90D")
    rotate_before_expiry = forms.CharField(required=False, max_length=100,
                                           label="Rotate before expiry", help_text="e.g. P30D")
    notify_before_expiry = forms.CharField(required=False, max_length=100,
                                           label="Notify before expiry", help_text="e.g. P30D")

    def _duration(self, name: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip().upper()
        if value:
            try:
                rotation.duration_days(value, field=name)
            except BadInput as exc:
                raise forms.ValidationError(exc.fields[name][0]) from exc
        return value

    def clean_expires_after(self):
        return self._duration("expires_after")

    def clean_rotate_after_create(self):
        return self._duration("rotate_after_create")

    def clean_rotate_before_expiry(self):
        return self._duration("rotate_before_expiry")

    def clean_notify_before_expiry(self):
        return self._duration("notify_before_expiry")

    def clean(self):
        cleaned = super().clean()
        if self.policy_ignored() or any(name in self.errors for name in POLICY_FIELDS):
            return cleaned
        if cleaned.get("rotate_after_create") and cleaned.get("rotate_before_expiry"):
            self.add_error("rotate_before_expiry",
                           "Rotate either after creation or before expiry, not both.")
            return cleaned
        policy = self.rotation_policy()
        if policy is not None and not policy["lifetime_actions"]:
            self.add_error(None, "Give a rotation or notification trigger to go with "
                                 "Expires after.")
        elif policy is not None:
            try:
                rotation.policy_validate(policy)
            except BadInput as exc:
                self._policy_error(policy, exc)
        return cleaned

    def policy_ignored(self) -> bool:
        """Whether the policy fields are set aside (the create form's "No rotation policy")."""
        return False

    def _policy_error(self, policy: dict, exc: BadInput) -> None:
        """Put a policy rule's error on the field the user typed it in."""
        action_fields = ["notify_before_expiry" if action["action"] == "Notify" else
                         "rotate_after_create" if action.get("time_after_create") else
                         "rotate_before_expiry" for action in policy["lifetime_actions"]]
        if "expires_after" in exc.fields:
            self.add_error("expires_after", _in_form_words(exc.fields["expires_after"][0]))
            return
        index = re.match(r"lifetime_actions\[(\d+)\]", exc.message)
        field = action_fields[int(index[1])] if index else None
        self.add_error(field, _in_form_words(exc.message))

    def rotation_policy(self) -> dict | None:
        data = self.cleaned_data
        actions = []
        if data.get("rotate_after_create") or data.get("rotate_before_expiry"):
            actions.append({"action": "Rotate",
                            "time_after_create": data.get("rotate_after_create") or None,
                            "time_before_expiry": data.get("rotate_before_expiry") or None})
        if data.get("notify_before_expiry"):
            actions.append({"action": "Notify", "time_before_expiry": data["notify_before_expiry"]})
        if not actions and not data.get("expires_after"):
            return None
        return {"expires_after": data.get("expires_after") or None, "lifetime_actions": actions}


POLICY_FIELDS = tuple(RotationFields.base_fields)


class PresetSelect(forms.Select):
    """The preset list; each option carries what it fills, for portal.js to show."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        preset = PRESETS.get(str(value))
        if preset:
            option["attrs"].update({"data-kty": preset["kty"],
                                    "data-key-size": preset.get("key_size") or "",
                                    "data-curve": preset.get("curve") or "",
                                    "data-key-ops": " ".join(preset["key_ops"])})
        return option


class KeyTypeSelect(forms.Select):
    """The key types; each option carries the operations the type supports."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        if value in KEY_TYPES:
            option["attrs"]["data-key-ops"] = " ".join(KEY_TYPES[value]["ops"])
        return option


class KeyCreateForm(RotationFields):
    preset = forms.ChoiceField(required=False, widget=PresetSelect, choices=[
        ("", "Custom (choose below)")] + [(slug, preset["label"]) for slug, preset in PRESETS.items()])
    name = forms.CharField(max_length=200)
    kty = forms.ChoiceField(required=False, label="Type", widget=KeyTypeSelect,
                            choices=[("", "— from preset —")] + [(k, k) for k in KEY_TYPES])
    key_size = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, choices=[
        ("", "default")] + [(str(s), str(s)) for s in (128, 192, 256, 2048, 3072, 4096)])
    curve = forms.ChoiceField(required=False, choices=[("", "default")] + [
        (c, c) for c in KEY_TYPES["EC-HSM"]["curves"]])
    key_ops = forms.MultipleChoiceField(required=False, choices=[(o, o) for o in ALL_OPS],
                                        widget=forms.CheckboxSelectMultiple)
    not_before = forms.DateTimeField(label="Activation", **DATETIME)
    expires = forms.DateTimeField(label="Expiry", **DATETIME)
    tags = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                           help_text="name=value, one per line")
    no_rotation_policy = forms.BooleanField(required=False, label="No rotation policy")

    def policy_ignored(self) -> bool:
        return bool(self.cleaned_data.get("no_rotation_policy"))

    def request_data(self) -> dict:
        """The cleaned input in the shape spec_from_request takes (tags may raise BadInput)."""
        data = dict(self.cleaned_data)
        preset = PRESETS.get(data.get("preset") or "")
        if preset and data.get("kty") and data["kty"] != preset["kty"]:
            # A type chosen by hand wins: the preset's size, curve and operations belong to
            # another type and would only contradict it.
            data["preset"] = ""
        data["tags"] = tags_parse(data.get("tags", ""))
        policy = self.rotation_policy()
        data["rotation_policy"] = "none" if data.pop("no_rotation_policy") else policy
        for name in ("expires_after", "rotate_after_create", "rotate_before_expiry",
                     "notify_before_expiry"):
            data.pop(name, None)
        return data


class KeyUpdateForm(forms.Form):
    enabled = forms.BooleanField(required=False)
    not_before = forms.DateTimeField(label="Activation", **DATETIME)
    expires = forms.DateTimeField(label="Expiry", **DATETIME)
    key_ops = forms.MultipleChoiceField(required=False, choices=[(o, o) for o in ALL_OPS],
                                        widget=forms.CheckboxSelectMultiple)
    tags = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    confirm_name = forms.CharField(required=False, label="Type the key name to disable it")

    @classmethod
    def for_record(cls, record: KeyRecord, data=None):
        initial = {"enabled": record.enabled, "not_before": record.not_before,
                   "expires": record.expires, "key_ops": record.key_ops,
                   "tags": record.tags_text}
        return cls(data, initial=initial)


class RotationPolicyForm(RotationFields):
    """A key's rotation policy. Saving one that stops automatic rotation (only a notice, or
    nothing) needs the key's name typed, as clearing the policy does."""

    confirm_name = forms.CharField(required=False, max_length=127,
                                   label="Type the key name to remove automatic rotation",
                                   widget=forms.TextInput(attrs={
                                       "autocomplete": "off",
                                       "aria-label": "Type the key name to remove automatic rotation"}))

    def __init__(self, *args, record: KeyRecord, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = record

    @classmethod
    def for_record(cls, record: KeyRecord, data=None):
        """The form filled from the key's cached policy (the inverse of rotation_policy())."""
        policy = record.rotation_policy or {}
        initial = {"expires_after": policy.get("expires_after")}
        for action in policy.get("lifetime_actions", []):
            if action["action"] == "Rotate":
                initial["rotate_after_create"] = action.get("time_after_create")
                initial["rotate_before_expiry"] = action.get("time_before_expiry")
            else:
                initial["notify_before_expiry"] = action.get("time_before_expiry")
        return cls(data, initial=initial, record=record)

    def removes_rotation(self) -> bool:
        """Whether saving stops the key's automatic rotation (or clears its policy)."""
        policy = self.rotation_policy()
        rotates = any(action["action"] == "Rotate"
                      for action in (policy or {}).get("lifetime_actions", []))
        return (self.record.has_rotation_policy and not rotates) or (
            policy is None and bool(self.record.rotation_policy))

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        name = self.record.name
        if self.rotation_policy() is None and not self.record.rotation_policy:
            self.add_error(None, "Give at least one rotation or notification trigger.")
        elif self.removes_rotation() and cleaned.get("confirm_name") != name:
            what = ("clears the rotation policy" if self.rotation_policy() is None
                    else "stops automatic rotation")
            self.add_error("confirm_name", f"Saving this {what} of {name}: type {name} to confirm.")
        return cleaned


class ConfirmForm(forms.Form):
    confirm_name = forms.CharField(required=False, label="Type the key name to confirm")


class KeyImportForm(forms.Form):
    name = forms.CharField(max_length=200)
    key_file = forms.FileField(label="Key file: a BYOK file (.byok) or a JSON Web Key")
    target_kty = forms.ChoiceField(required=False, label="Type of the key inside a BYOK file",
                                   choices=[("", "— not a BYOK file —")] + [(k, k) for k in KEY_TYPES])
    tags = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    expires = forms.DateTimeField(label="Expiry", **DATETIME)

    def jwk(self) -> dict:
        """The JWK to import: a plain JWK file as it is, or a BYOK file as key_hsm."""
        import base64
        import json

        upload = self.cleaned_data["key_file"]
        if upload.size > 256 * 1024:
            raise BadInput("A key file is at most 256 KiB.", fields={"key_file": ["Too large."]})
        raw = upload.read()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadInput("The key file is not JSON (a .byok file or a JWK).",
                           fields={"key_file": ["Not JSON."]}) from exc
        if not isinstance(data, dict):
            raise BadInput("The key file must hold a JSON object.", fields={"key_file": ["Not a JWK."]})
        if "ciphertext" in data and "header" in data:
            # A BYOK file from the on-premises HSM's tool: the service unwraps it with the
            # KEK named in its header; the portal passes it through untouched.
            kty = self.cleaned_data.get("target_kty")
            if not kty:
                raise BadInput("Choose the type of the key inside the BYOK file.",
                               fields={"target_kty": ["Required for a BYOK file."]})
            return {"kty": kty, "key_hsm": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}
        # az keyvault's JWK files may nest the key under "key".
        return data.get("key", data)


class KeyRestoreForm(forms.Form):
    backup_file = forms.FileField(label="Key backup file")


def _pick(what: str) -> dict:
    return {"invalid_choice": f"'%(value)s' is not {what}; pick one from the list."}


class KeyFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=127, label="Name contains")
    tag = forms.CharField(required=False, max_length=300, label="Tag (name or name=value)")
    kty = forms.ChoiceField(required=False, error_messages=_pick("a key type"), label="Type",
                            choices=[("", "any")] + [(k, k) for k in KEY_TYPES])
    state = forms.ChoiceField(required=False, error_messages=_pick("a key state"), choices=[
        ("active", "live"), ("enabled", "enabled"), ("disabled", "disabled"),
        ("deleted", "deleted"), ("all", "all")])
    expiry = forms.ChoiceField(required=False, error_messages=_pick("an expiry filter"), choices=[
        ("", "any"), ("expired", "expired"), ("30d", "within 30 days"),
        ("90d", "within 90 days"), ("none", "never expires")])
    rotation = forms.ChoiceField(required=False, error_messages=_pick("a rotation filter"),
                                 label="Automatic rotation", choices=[("", "any"), ("yes", "rotates"), ("no", "never rotates")])
    drift = forms.BooleanField(required=False, label="Changed outside the portal")
    sort = forms.ChoiceField(required=False, error_messages=_pick("a sort order"), choices=[
        ("name", "name"), ("-name", "name ↓"), ("expires", "expiry"), ("-expires", "expiry ↓"),
        ("-created", "newest"), ("created", "oldest"), ("-updated", "recently updated"),
        ("updated", "least recently updated")])

    def to_filter(self):
        from keys_app.selectors import KeyFilter

        data = self.cleaned_data
        return KeyFilter(q=data.get("q") or "", tag=data.get("tag") or "",
                         kty=data.get("kty") or "", state=data.get("state") or "active",
                         expiry=data.get("expiry") or "", rotation=data.get("rotation") or "",
                         drift=bool(data.get("drift")), sort=data.get("sort") or "name")
