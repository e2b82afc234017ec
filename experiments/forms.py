"""Admin forms and formsets that enforce the service layer's rules with field messages."""
from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from . import services
from .models import Experiment, Layer, Metric, Override, Variant


def _raise_for(form_or_formset, error: ValidationError) -> None:
    """Re-raise a service error so the admin shows its messages on the form or formset."""
    messages = []
    for field, errs in error.message_dict.items() if hasattr(error, "error_dict") else [("", error.messages)]:
        for msg in errs:
            messages.append(msg if not field or field == "__all__" else f"{msg}")
    raise ValidationError(messages)


def _live_rows(formset) -> list[dict]:
    rows = []
    for form in formset.forms:
        if not hasattr(form, "cleaned_data") or not form.cleaned_data:
            continue
        if form.cleaned_data.get("DELETE"):
            continue
        rows.append(form.cleaned_data)
    return rows


class ExperimentForm(forms.ModelForm):
    class Meta:
        model = Experiment
        fields = "__all__"  # noqa: DJ007 - the admin decides which fields to show

    def clean_segment_attributes(self):
        """phases: the segment list is a JSON list of attribute names (frozen at the start)."""
        value = self.cleaned_data.get("segment_attributes") or []
        try:
            services.validate_segment_attributes(value)
        except ValidationError as e:
            raise ValidationError(e.message_dict["segment_attributes"]) from None
        return value

    def clean(self):
        cleaned = super().clean()
        instance = self.instance
        if instance.pk:
            changes = {f: cleaned[f] for f in self.changed_data if f in cleaned}
            try:
                services.validate_changes(instance, changes)
            except ValidationError as e:
                for field, errs in e.message_dict.items():
                    for msg in errs:
                        self.add_error(field if field in self.fields else None, msg)
        if "layer" in cleaned or "layer_share" in cleaned:
            layer = cleaned.get("layer", getattr(instance, "layer", None))
            share = cleaned.get("layer_share", getattr(instance, "layer_share", None))
            if "layer" in self.fields or "layer_share" in self.fields:
                if layer is not None:
                    layer = services.lock_layer(layer)  # the other shares stay as read until the save
                try:
                    services.validate_layer_share(layer, share, experiment=instance if instance.pk else None)
                except ValidationError as e:
                    for msg in e.message_dict.get("layer_share", []):
                        self.add_error("layer_share" if "layer_share" in self.fields else None, msg)
        return cleaned


class VariantForm(forms.ModelForm):
    def clean_payload(self):
        """An empty box means an empty payload; anything but a JSON object is refused."""
        payload = self.cleaned_data.get("payload")
        if payload in (None, ""):
            return {}
        if not isinstance(payload, dict):
            raise ValidationError("The payload must be a JSON object, e.g. {\"color\": \"green\"}.")
        return payload


class VariantFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        if self.instance.pk and self.instance.variants_frozen:
            return  # read-only inline: nothing submitted
        try:
            services.validate_variants(_live_rows(self))
        except ValidationError as e:
            _raise_for(self, e)


class ExperimentMetricFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        rows = _live_rows(self)
        to_start = bool(self.instance.pk) and self.instance.status != Experiment.Status.DRAFT
        try:
            services.validate_metrics(rows, to_start=to_start)
        except ValidationError as e:
            _raise_for(self, e)


class ValuesField(forms.CharField):
    """Targeting values as people type them: ``CN, US`` or a JSON list (``["CN", "US"]``, ``[18]``).

    Comma-separated items are trimmed strings (numeric operators accept numeric strings); use
    JSON for a value containing a comma, or for numbers and booleans in equality rules.
    """

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) and "," not in v and v == v.strip() and v
                                           and v[0] not in "[{" for v in value):
            return ", ".join(value)
        return json.dumps(value if value is not None else [])

    def to_python(self, value):
        text = (super().to_python(value) or "").strip()
        if not text:
            return []
        if text[0] in "[{":
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ValidationError("Not valid JSON: give a JSON list or comma-separated values.") from None
            if not isinstance(parsed, list):
                raise ValidationError("Give a JSON list or comma-separated values.")
            return parsed
        items = [item.strip() for item in text.split(",")]
        if any(not item for item in items):
            raise ValidationError("An empty value between commas: remove the extra comma.")
        return items

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != (initial if initial is not None else [])
        except ValidationError:
            return True


class TargetingRuleForm(forms.ModelForm):
    values = ValuesField(
        required=False, widget=forms.TextInput(attrs={"size": 40}),
        help_text="Comma-separated (CN, US) or a JSON list; none for exists/not exists.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("operator") and "values" in cleaned and not cleaned.get("DELETE"):
            values = cleaned.get("values")
            if values is None:
                values = cleaned["values"] = []
            try:
                services.validate_targeting([{**cleaned, "values": values}])
            except ValidationError as e:
                for msg in e.message_dict.get("targeting", []):
                    self.add_error("values", msg.split(": ", 1)[-1])
        return cleaned


class LayerForm(forms.ModelForm):
    class Meta:
        model = Layer
        fields = "__all__"  # noqa: DJ007 - the admin decides which fields to show

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk:
            try:
                services.validate_layer_changes(self.instance, {f: cleaned[f] for f in self.changed_data if f in cleaned})
            except ValidationError as e:
                for field, errs in e.message_dict.items():
                    for msg in errs:
                        self.add_error(field if field in self.fields else None, msg)
        return cleaned


class MetricForm(forms.ModelForm):
    class Meta:
        model = Metric
        fields = "__all__"  # noqa: DJ007 - the admin decides which fields to show

    def clean(self):
        cleaned = super().clean()
        probe = Metric(kind=cleaned.get("kind"), denominator_event=cleaned.get("denominator_event") or "",
                       quantile=cleaned.get("quantile"), cap=cleaned.get("cap"))
        try:
            services.validate_metric(probe)
        except ValidationError as e:
            for field, errs in e.message_dict.items():
                for msg in errs:
                    self.add_error(field, msg)
        return cleaned


class OverrideForm(forms.ModelForm):
    """A QA override names its variant by key, so it can be added on the Add page with the variants."""

    variant_key = forms.CharField(label="Variant key", max_length=64, help_text="e.g. control or green")

    class Meta:
        model = Override
        fields = ["unit_id", "variant_key", "note"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.variant_id:
            self.fields["variant_key"].initial = self.instance.variant.key

    def save(self, commit: bool = True):
        # The formset saves the variants first (inline order), so the key resolves on the Add page too.
        self.instance.variant = Variant.objects.get(
            experiment=self.instance.experiment, key=self.cleaned_data["variant_key"]
        )
        return super().save(commit)


class OverrideFormSet(forms.BaseInlineFormSet):
    def _variant_keys(self) -> set[str]:
        """The variants this save will leave: the submitted variant rows, else the saved ones."""
        prefix = "variants"
        try:
            total = int(self.data.get(f"{prefix}-TOTAL_FORMS", ""))
        except ValueError:
            total = None
        saved = set(self.instance.variants.values_list("key", flat=True)) if self.instance.pk else set()
        if total is None or (self.instance.pk and self.instance.is_locked):
            return saved
        rows = [i for i in range(min(total, 1000)) if f"{prefix}-{i}-key" in self.data]
        if total and not rows:  # a read-only variants inline (no change permission) posts no rows
            return saved
        return {
            self.data.get(f"{prefix}-{i}-key", "").strip() for i in rows
            if not self.data.get(f"{prefix}-{i}-DELETE")
        } - {""}

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        keys = self._variant_keys()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if not data or data.get("DELETE"):
                continue
            if data.get("variant_key") not in keys:
                form.add_error("variant_key", f"No variant '{data.get('variant_key')}' in this experiment "
                                              f"(variants: {', '.join(sorted(keys)) or 'none yet'}).")
