"""Key forms of the HTML door; they parse fields, and the services validate the rest."""
import re

from django import forms
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from keys_app import rotation
from keys_app.models import KeyRecord
from keys_app.spec import KEY_TYPES, MAX_TAGS, PRESETS, tags_parse, tags_validate
from portal.errors import BadInput

ALL_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import"]
DATETIME = {"widget": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            "required": False}


def _in_form_words(text: str, *, subject: str = "") -> str:
    """A rotation rule's message in the form's words: no API field paths or ISO codes.

    subject is the label of the field the message sits on ("Rotate before expiry").
    """
    text = re.sub(r"^lifetime_actions\[\d+\][.\w]*: ", "", text)
    text = text.replace("Required with time_before_expiry.",
                        "Required with Rotate or Notify before expiry: they count back from it.")
    text = text.replace("time_after_create", subject or "Rotate after creation")
    text = text.replace("time_before_expiry", subject or "the trigger before expiry")
    text = text.replace("expires_after in the policy", "Expires after")
    text = text.replace("expires_after", "Expires after")
    text = re.sub(r" \(P\d+D\)", "", text)  # "at least 7 days (P7D)" says it twice
    text = re.sub(r"\bP(\d+)D\b", r"\1 days", text)
    return text[:1].upper() + text[1:]


# A duration is a whole number and a unit; the HSM gets ISO-8601 (P30D, P3M, P1Y).
DURATION_UNITS = {"D": ("days", 36500), "M": ("months", 1200), "Y": ("years", 100)}
ISO_UNIT = "iso"
_ISO_PARTS = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def duration_parts(value: str | None) -> tuple[str, str]:
    """An ISO-8601 duration as (number, unit) for the picker; ("P1Y6D", "iso") when no single
    unit says it exactly, so saving the form never changes a value nobody edited."""
    value = (value or "").strip().upper()
    match = _ISO_PARTS.match(value) if value not in ("", "P") else None
    if not value:
        return "", "D"
    if not match:
        return value, ISO_UNIT
    years, months, weeks, days = (int(part or 0) for part in match.groups())
    given = [(n, unit) for n, unit in ((years, "Y"), (months, "M"), (weeks * 7 + days, "D")) if n]
    if len(given) == 1 and not (weeks and days):
        return str(given[0][0]), given[0][1]
    if not (weeks or days) and years and months:
        return str(years * 12 + months), "M"
    return value, ISO_UNIT


class DurationWidget(forms.Widget):
    """A number box and a unit picker (<name>_n, <name>_unit). A plain <name> holding
    ISO-8601 text is read too (scripts, and values set outside the portal)."""

    template_name = "keys_app/_duration_widget.html"

    def value_from_datadict(self, data, files, name):
        if f"{name}_n" in data or f"{name}_unit" in data:
            return (data.get(f"{name}_n", ""), data.get(f"{name}_unit", ""))
        return data.get(name)

    def value_omitted_from_data(self, data, files, name):
        return not any(key in data for key in (name, f"{name}_n", f"{name}_unit"))

    def format_value(self, value):
        if isinstance(value, (tuple, list)):
            return (str(value[0] or ""), str(value[1] or ""))
        return duration_parts(value)

    def id_for_label(self, id_):
        return f"{id_}_n" if id_ else id_

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        number, unit = context["widget"]["value"]
        units = [(code, label) for code, (label, _) in DURATION_UNITS.items()]
        if unit not in DURATION_UNITS:
            units.append((ISO_UNIT, "ISO-8601 (e.g. P1Y6M)"))
        attrs = dict(context["widget"]["attrs"])
        base_id = attrs.pop("id", "")
        unit_label = attrs.pop("data-unit-label", "Unit")
        iso = unit not in DURATION_UNITS
        number_attrs = {**attrs, "id": f"{base_id}_n" if base_id else ""}
        if not iso:
            number_attrs.update(min="1", max="36500", step="1", inputmode="numeric")
        context["widget"].update(number=number, unit=unit, units=units, iso=iso,
                                 number_attrs={k: v for k, v in number_attrs.items() if v},
                                 unit_id=f"{base_id}_unit" if base_id else "",
                                 unit_label=unit_label)
        return context

    def render(self, name, value, attrs=None, renderer=None):
        # Rendered by the project's template engine (the form renderer's engine does not
        # see the project's template directory).
        return mark_safe(render_to_string(self.template_name,
                                          self.get_context(name, value, attrs)))


class DurationField(forms.Field):
    """A duration typed as a number and a unit, cleaned to ISO-8601 text ("" when empty)."""

    widget = DurationWidget

    def widget_attrs(self, widget):
        return {**super().widget_attrs(widget), "data-unit-label": f"{self.label}: unit"}

    def to_python(self, value):
        if isinstance(value, (tuple, list)):
            number, unit = (str(part or "").strip() for part in value)
            if not number:
                return ""
            if unit == ISO_UNIT:
                return self._iso(number)
            if unit not in DURATION_UNITS:
                raise forms.ValidationError("Choose days, months or years.")
            if not number.isdigit():
                raise forms.ValidationError("Enter a whole number, e.g. 90.")
            label, most = DURATION_UNITS[unit]
            count = int(number[:12])
            if count < 1:
                raise forms.ValidationError("Enter a number of at least 1.")
            if count > most or len(number) > 12:
                raise forms.ValidationError(
                    f"At most {most} {label}: a duration is at most 100 years.")
            return f"P{count}{unit}"
        return self._iso(value or "")

    def _iso(self, text: str) -> str:
        text = text.strip().upper()
        if text:
            try:
                rotation.duration_days(text, field="duration")
            except BadInput as exc:
                raise forms.ValidationError(exc.fields["duration"][0]) from exc
        return text


class TagsWidget(forms.Widget):
    """Tags as rows of name and value (tags_name, tags_value, repeated). Without JavaScript
    there are a few empty rows; forms.js adds and removes rows. A plain <name> holding
    'name=value' lines is read too."""

    template_name = "keys_app/_tags_widget.html"
    empty_rows = 3

    def value_from_datadict(self, data, files, name):
        if f"{name}_name" in data:
            # Bounded: past MAX_ROWS rows nothing more is read (and the field refuses them).
            names = data.getlist(f"{name}_name")[:TagsField.MAX_ROWS + 1]
            values = data.getlist(f"{name}_value")[:len(names)]
            values += [""] * (len(names) - len(values))
            return list(zip(names, values, strict=True))
        return data.get(name)

    def value_omitted_from_data(self, data, files, name):
        return name not in data and f"{name}_name" not in data

    def format_value(self, value):
        if isinstance(value, dict):
            return sorted(value.items())
        if isinstance(value, (list, tuple)):
            return [(str(n), str(v)) for n, v in value]
        rows = []
        for line in (value or "").splitlines():
            if line.strip():
                tag, _, text = line.partition("=")
                rows.append((tag.strip(), text.strip()))
        return rows

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        rows = [row for row in context["widget"]["value"] if row[0] or row[1]]
        rows += [("", "")] * max(1, min(self.empty_rows, MAX_TAGS - len(rows)))
        context["widget"].update(rows=rows, max_rows=MAX_TAGS)
        return context

    def render(self, name, value, attrs=None, renderer=None):
        return mark_safe(render_to_string(self.template_name,
                                          self.get_context(name, value, attrs)))


class TagsField(forms.Field):
    """Tags as a dict, from name/value rows (or 'name=value' lines); empty rows are skipped."""

    widget = TagsWidget
    MAX_ROWS = MAX_TAGS * 4

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        if value is None or isinstance(value, str):
            try:
                return tags_validate(tags_parse(value or ""))
            except BadInput as exc:
                raise forms.ValidationError(exc.message) from exc
        if len(value) > self.MAX_ROWS:
            raise forms.ValidationError(f"At most {MAX_TAGS} tags.")
        tags = {}
        for number, (name, text) in enumerate(value, start=1):
            name, text = name.strip(), text.strip()
            if not name and not text:
                continue
            if not name:
                raise forms.ValidationError(f"Row {number}: give the tag a name.")
            if name in tags:
                raise forms.ValidationError(f"Row {number}: the tag {name[:40]} is given twice.")
            tags[name] = text
        try:
            return tags_validate(tags)
        except BadInput as exc:
            raise forms.ValidationError(exc.message) from exc

    def has_changed(self, initial, data):
        return self.to_python(data) != (initial or {})


class RotationFields(forms.Form):
    """A rotation policy as flat fields; a bad value is a field error, never dropped."""

    expires_after = DurationField(required=False, label="Expires after",
                                  help_text="How long each new version lives, e.g. 2 years.")
    rotate_after_create = DurationField(required=False, label="Rotate after creation",
                                        help_text="e.g. 90 days after a version is made.")
    rotate_before_expiry = DurationField(required=False, label="Rotate before expiry",
                                         help_text="e.g. 30 days before a version expires.")
    notify_before_expiry = DurationField(required=False, label="Notify before expiry",
                                         help_text="An Event Grid notice, e.g. 30 days before.")

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
        subject = str(self.fields[field].label) if field else ""
        self.add_error(field, _in_form_words(exc.message, subject=subject))

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
    tags = TagsField(help_text="Each tag is a name and a value, e.g. owner and payments.")
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
        data["tags"] = data.get("tags") or {}
        policy = self.rotation_policy()
        data["rotation_policy"] = "none" if data.pop("no_rotation_policy") else policy
        for name in ("expires_after", "rotate_after_create", "rotate_before_expiry",
                     "notify_before_expiry"):
            data.pop(name, None)
        return data


class EnabledField(forms.Field):
    """Enable or disable: "true"/"on" or "false"/"off"; absent means leave it as it is
    (the attributes form does not carry it: disabling is in the danger zone)."""

    widget = forms.HiddenInput

    def to_python(self, value):
        value = str(value or "").strip().lower()
        return True if value in ("true", "on", "1") else False if value in (
            "false", "off", "0") else None


class KeyUpdateForm(forms.Form):
    enabled = EnabledField(required=False)
    not_before = forms.DateTimeField(label="Activation", **DATETIME)
    expires = forms.DateTimeField(label="Expiry", **DATETIME)
    key_ops = forms.MultipleChoiceField(required=False, label="Operations",
                                        choices=[(o, o) for o in ALL_OPS],
                                        widget=forms.CheckboxSelectMultiple)
    tags = TagsField()
    confirm_name = forms.CharField(required=False, max_length=127,
                                   label="Type the key name to disable it")

    @classmethod
    def for_record(cls, record: KeyRecord, data=None):
        initial = {"not_before": record.not_before, "expires": record.expires,
                   "key_ops": record.key_ops, "tags": record.tags}
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
    tags = TagsField()
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
