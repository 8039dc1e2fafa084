"""The new-study form: the page's input, turned into ``studies.services.study_create``'s
keywords. Every rule on values lives in the service; this form only parses what a browser
sends (numbers, JSON, ticked boxes) and puts the service's refusals next to the field they
name (``ApplicationError.field``).

The "Advanced" part narrows the search space: one row per parameter of
``workers.engine.search_space.describe_space``, for image (CNN) and text (LSTM) models; only
the rows of the chosen data set's kind are used. A numeric row takes a fixed value or a
low/high range; a categorical row takes the values to keep (one ticked fixes it; all or none
ticked leaves it free). A JSON object of overrides may be given too; the rows win over it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms

from accounts.errors import ApplicationError
from studies.models import DatasetUpload, Executor, Mode, Pruner
from studies.services import LIMITS
from workers.engine.catalog import DATASETS, IMAGE, TEXT, UPLOAD
from workers.engine.search_space import CATEGORICAL, DEFAULT_MAX_EPOCHS, INT, describe_space

# The RunPod executor is not built yet (runpod_service/ is a placeholder): the option is
# shown, disabled, so people know it is coming, and refused if sent anyway.
RUNPOD_AVAILABLE = True  # workers.runpod_executor; without credentials trials fall back to local
UPLOAD_PREFIX = "upload:"
KIND_LABELS = {IMAGE: "image", TEXT: "text"}
MODEL_LABELS = {IMAGE: "image data sets (CNN)", TEXT: "text data sets (LSTM)"}
MODE_HELP = (
    "Accuracy: each trial is scored by its best validation accuracy. "
    "Accuracy + model health: each trained model is also checked for health — gradient norms "
    "(vanishing or exploding), dead and saturated filters and units, loss stability and "
    "overfitting (the gap between training and validation accuracy) — and scored "
    "total = 0.7·accuracy + 0.3·health."
)
# Service fields that are shown under another form field.
FIELD_ALIASES = {"upload": "dataset", "dataset_options": "dataset", "search_space": "search_space_json"}


def _fmt(value: Any) -> str:
    """A parameter value as people type it: JSON's true/false, numbers without noise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class DatasetSelect(forms.Select):
    """A select whose options carry ``data-kind`` (image or text), so the page can show the
    matching overrides."""

    def __init__(self, kinds: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds = kinds

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if str(value) in self.kinds:
            option["attrs"]["data-kind"] = self.kinds[str(value)]
        return option


class ExecutorSelect(forms.Select):
    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if value == Executor.RUNPOD and not RUNPOD_AVAILABLE:
            option["attrs"]["disabled"] = True
        return option


def _int_input(field: str, **attrs: Any) -> forms.NumberInput:
    low, high = LIMITS[field]
    return forms.NumberInput(attrs={"min": low, "max": high, "step": 1, **attrs})


def dataset_choices(uploads: Sequence[DatasetUpload]) -> tuple[list[Any], dict[str, str]]:
    """The select's grouped choices and each value's kind."""
    catalog = [(name, f"{info.title} · {KIND_LABELS[info.kind]}") for name, info in DATASETS.items()]
    kinds = {name: info.kind for name, info in DATASETS.items()}
    groups: list[Any] = [("Built-in data sets", catalog)]
    if uploads:
        own = [(f"{UPLOAD_PREFIX}{u.pk}", f"{u.name} · {KIND_LABELS.get(u.kind, u.kind)} (upload)") for u in uploads]
        groups.append(("Uploads of this workspace", own))
        kinds.update({f"{UPLOAD_PREFIX}{u.pk}": u.kind for u in uploads})
    return groups, kinds


class OverrideRow:
    """One parameter's row in the Advanced part: its spec and its bound fields."""

    def __init__(self, form: StudyForm, kind: str, spec: dict[str, Any]) -> None:
        self.kind = kind
        self.spec = spec
        self.name = spec["name"]
        self.categorical = spec["kind"] == CATEGORICAL
        self.prefix = f"ov__{kind}__{self.name}__"
        parts = ("choices",) if self.categorical else ("fixed", "low", "high")
        self.fields = [form[self.prefix + part] for part in parts]
        # (short label, field): what the row shows next to each input.
        self.inputs = [(part.replace("fixed", "fixed value"), form[self.prefix + part]) for part in parts]

    @property
    def bounds(self) -> str:
        if self.categorical:
            return ", ".join(_fmt(choice) for choice in self.spec["choices"])
        text = f"{_fmt(self.spec['low'])} to {_fmt(self.spec['high'])}"
        if self.spec.get("log"):
            text += ", log scale"
        if self.spec.get("step") and self.spec["step"] != 1:
            text += f", step {self.spec['step']}"
        return text

    @property
    def errors(self) -> list[str]:
        return [error for field in self.fields for error in field.errors]


class StudyForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Unique in the workspace.")
    dataset = forms.ChoiceField(label="Data set", help_text="Image sets train CNNs, text sets LSTMs.")
    mode = forms.ChoiceField(
        choices=Mode.choices, initial=Mode.SIMPLE, widget=forms.RadioSelect, help_text=MODE_HELP
    )
    n_trials = forms.IntegerField(label="Trials", initial=20, widget=_int_input("n_trials"),
                                  help_text="How many models to train and compare.")
    max_epochs = forms.IntegerField(label="Max epochs", initial=DEFAULT_MAX_EPOCHS, widget=_int_input("max_epochs"),
                                    help_text="Each trial trains from half of this up to it.")
    concurrency = forms.IntegerField(initial=1, widget=_int_input("concurrency"),
                                     help_text="Trials of this study training at once.")
    executor = forms.ChoiceField(
        choices=[
            (Executor.LOCAL.value, Executor.LOCAL.label),
            (
                Executor.RUNPOD.value,
                f"{Executor.RUNPOD.label}"
                + (" (falls back to local workers without a RunPod endpoint)" if RUNPOD_AVAILABLE else " (not available yet)"),
            ),
        ],
        initial=Executor.LOCAL,
        widget=ExecutorSelect,
        help_text="Where trials train." + ("" if RUNPOD_AVAILABLE else " RunPod comes in a later release."),
    )
    pruner = forms.ChoiceField(choices=Pruner.choices, initial=Pruner.NONE,
                               help_text="Stops unpromising trials early, after each epoch.")
    sample_fraction = forms.FloatField(
        initial=1.0,
        widget=forms.NumberInput(attrs={"step": "any", "min": 0, "max": 1}),
        help_text="Share of the data set to train on: above 0, at most 1.",
    )
    seed = forms.IntegerField(required=False, widget=forms.NumberInput(attrs={"min": 0, "step": 1}),
                              help_text="Optional: the same seed repeats the same search.")
    search_space_json = forms.CharField(
        label="Overrides as JSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text='Optional, e.g. {"filters": 32, "learning_rate": {"low": 0.001, "high": 0.005}}. '
        "The rows above win over it.",
    )

    def __init__(self, *args: Any, uploads: Sequence[DatasetUpload] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads = {upload.pk: upload for upload in uploads}
        choices, kinds = dataset_choices(uploads)
        self.fields["dataset"].choices = choices
        self.fields["dataset"].widget = DatasetSelect(kinds, choices=choices)
        self.fields["dataset"].initial = "digits"
        self.specs = {kind: describe_space(kind, max_epochs=DEFAULT_MAX_EPOCHS) for kind in (IMAGE, TEXT)}
        for kind, specs in self.specs.items():
            for spec in specs:
                self._add_override_fields(kind, spec)

    def _add_override_fields(self, kind: str, spec: dict[str, Any]) -> None:
        prefix = f"ov__{kind}__{spec['name']}__"
        label = spec["name"].replace("_", " ")
        if spec["kind"] == CATEGORICAL:
            self.fields[prefix + "choices"] = forms.MultipleChoiceField(
                label=f"{label}: values to search",
                choices=[(json.dumps(choice), _fmt(choice)) for choice in spec["choices"]],
                initial=[json.dumps(choice) for choice in spec["choices"]],
                required=False,
                widget=forms.CheckboxSelectMultiple,
            )
            return
        number: type[forms.Field] = forms.IntegerField if spec["kind"] == INT else forms.FloatField
        attrs = {"step": spec.get("step") or 1} if spec["kind"] == INT else {"step": "any"}
        for part, placeholder in (("fixed", ""), ("low", spec["low"]), ("high", spec["high"])):
            self.fields[prefix + part] = number(
                label=f"{label}: {'fixed value' if part == 'fixed' else part}",
                required=False,
                widget=forms.NumberInput(attrs={**attrs, "placeholder": _fmt(placeholder) if placeholder != "" else ""}),
            )

    # --- what the template shows -------------------------------------------------------

    def override_groups(self) -> list[dict[str, Any]]:
        """The Advanced part: per model kind, its title and rows."""
        return [
            {"kind": kind, "title": MODEL_LABELS[kind], "rows": [OverrideRow(self, kind, spec) for spec in specs]}
            for kind, specs in self.specs.items()
        ]

    def advanced_has_errors(self) -> bool:
        return bool(self.errors) and any(
            name.startswith("ov__") or name == "search_space_json" for name in self.errors
        )

    # --- parsing -------------------------------------------------------------------------

    def chosen_kind(self) -> str | None:
        dataset = self.cleaned_data.get("dataset", "")
        if dataset.startswith(UPLOAD_PREFIX):
            upload = self.uploads.get(int(dataset[len(UPLOAD_PREFIX):]))
            return upload.kind if upload else None
        info = DATASETS.get(dataset)
        return info.kind if info else None

    def clean_executor(self) -> str:
        executor = self.cleaned_data["executor"]
        if executor == Executor.RUNPOD and not RUNPOD_AVAILABLE:
            raise forms.ValidationError("RunPod is not available yet; choose local workers.")
        return executor

    def clean_search_space_json(self) -> dict[str, Any]:
        text = self.cleaned_data["search_space_json"].strip()
        if not text:
            return {}
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno}).")
        if not isinstance(overrides, dict):
            raise forms.ValidationError('Give a JSON object of overrides by parameter name, e.g. {"filters": 32}.')
        return overrides

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind = self.chosen_kind() if "dataset" in cleaned else None
        overrides = dict(cleaned.get("search_space_json") or {})
        if kind is not None:
            for spec in self.specs[kind]:
                override = self._row_override(kind, spec)
                if override is not None:
                    overrides[spec["name"]] = override
        cleaned["search_space"] = overrides
        return cleaned

    def _row_override(self, kind: str, spec: dict[str, Any]) -> Any:
        prefix = f"ov__{kind}__{spec['name']}__"
        if spec["kind"] == CATEGORICAL:
            ticked = self.cleaned_data.get(prefix + "choices") or []
            values = [json.loads(value) for value in ticked]
            if not values or len(values) == len(spec["choices"]):
                return None  # nothing narrowed
            return values[0] if len(values) == 1 else {"choices": values}
        fixed, low, high = (self.cleaned_data.get(prefix + part) for part in ("fixed", "low", "high"))
        if fixed is not None:
            if low is not None or high is not None:
                self.add_error(prefix + "fixed", f"{spec['name']}: give a fixed value or a range, not both.")
            return fixed
        if low is None and high is None:
            return None
        return {key: value for key, value in (("low", low), ("high", high)) if value is not None}

    # --- to and from the service --------------------------------------------------------

    @property
    def start_requested(self) -> bool:
        return self.data.get("action") == "start"

    def service_kwargs(self) -> dict[str, Any]:
        """``study_create``'s keywords (after ``is_valid``)."""
        data = self.cleaned_data
        kwargs: dict[str, Any] = {
            field: data[field]
            for field in ("name", "mode", "n_trials", "max_epochs", "concurrency", "executor", "pruner",
                          "sample_fraction", "seed", "search_space")
        }
        dataset = data["dataset"]
        if dataset.startswith(UPLOAD_PREFIX):
            kwargs.update(dataset=UPLOAD, upload_id=int(dataset[len(UPLOAD_PREFIX):]), dataset_options={})
        else:
            kwargs["dataset"] = dataset
        return kwargs

    def add_service_error(self, error: ApplicationError) -> None:
        """Show a refusal of the service next to the field it names: a search-space
        problem of one parameter on its row, others on their field, the rest on top."""
        field = FIELD_ALIASES.get(error.field or "", error.field)
        if error.field == "search_space":
            kind = self.chosen_kind()
            parameter = error.message.split(":", 1)[0]
            if kind is not None and any(spec["name"] == parameter for spec in self.specs[kind]):
                row = OverrideRow(self, kind, next(s for s in self.specs[kind] if s["name"] == parameter))
                field = row.fields[0].name
        if field not in self.fields:
            field = None
        self.add_error(field, error.message)
