"""The typed run configuration: one flat pydantic model, every field with a default.

Flat on purpose: every field is reachable as ``key=value`` on the command line and as a sweep axis, and
a config file is a plain JSON (or YAML) object. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CONV_DROPOUTS",
    "RNN_DROPOUTS",
    "Config",
    "FieldDoc",
    "describe_fields",
    "did_you_mean",
    "load_config",
    "parse_overrides",
]


DATASETS = ("mnist1d", "fashion_mnist", "mnist", "digits", "uci")
MODELS = ("mlp", "cnn", "gru", "lstm")
# The dropout layers a CNN / an RNN can use, by name: the keys of lab.models.CONV_DROPOUT and
# RNN_DROPOUT (a test keeps them equal). Listed here, not read from there, so that a config is
# validated, and --help lists the choices, without importing torch.
ConvDropout = Literal["element", "channel", "dropblock", "dropconnect"]
RnnDropout = Literal["standard", "variational", "recurrent"]
CONV_DROPOUTS: tuple[str, ...] = typing.get_args(ConvDropout)
RNN_DROPOUTS: tuple[str, ...] = typing.get_args(RnnDropout)


class Config(BaseModel):
    """Everything one run needs. ``p`` values are drop probabilities, as everywhere in dropkit."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field("run", description="label for reports (e.g. 'dropout+max-norm')")
    seed: int = Field(
        0, ge=0, description="seeds the model, the masks, the batches and the val split"
    )

    # data
    dataset: str = Field(
        "mnist1d",
        description="data set (fashion-mnist is read as fashion_mnist), or your loader "
        "pkg.module:load, called as load(config) -> (x_train, y_train, x_test, y_test) arrays; "
        "integer labels 0..K-1 mean classification, float targets regression",
        json_schema_extra={"choices": "|".join(DATASETS) + "|pkg.module:load", "known": DATASETS},
    )
    data_dir: str | None = Field(None, description="IDX folder (fashion_mnist/mnist) or UCI folder")
    uci_split: int = Field(0, ge=0, description="which standard split of a UCI set")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="carved from train, by seed")
    train_size: int | None = Field(None, ge=1, description="use only this many training examples")

    # model
    model: str = Field(
        "mlp",
        description="network family, or your factory pkg.module:build, called as "
        "build(config, input_shape, n_outputs) -> torch.nn.Module",
        json_schema_extra={"choices": "|".join(MODELS) + "|pkg.module:build", "known": MODELS},
    )
    widths: tuple[int, ...] = Field(
        (100, 100), description="MLP hidden widths", json_schema_extra={"bounds": "each >= 1"}
    )
    activation: Literal["relu", "tanh", "gelu", "elu"] = Field(
        "relu", description="hidden-layer non-linearity"
    )
    p_input: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the inputs")
    p_hidden: tuple[float, ...] = Field(
        (0.0,),
        description="dropout after each hidden layer: one rate for all, or one per layer",
        json_schema_extra={"bounds": "each 0 <= p < 1"},
    )
    batchnorm: Literal["none", "before_dropout", "after_dropout"] = Field(
        "none", description="BatchNorm in each hidden block, and where relative to dropout"
    )
    mlp_dropout: Literal["bernoulli", "gaussian", "dropconnect"] = Field(
        "bernoulli",
        description="MLP noise: Bernoulli dropout, Gaussian N(1, p/(1-p)) noise (both on p_input "
        "and p_hidden), or DropConnect on the hidden layers' weights (p_hidden; p_input Bernoulli)",
    )
    channels: tuple[int, ...] = Field(
        (32, 64),
        description="CNN conv channels (one block each)",
        json_schema_extra={"bounds": "each >= 1"},
    )
    conv_dropout: ConvDropout = Field(
        "element",
        description="CNN dropout after each conv block's activation: element-wise, whole "
        "channels, DropBlock (3-wide blocks), or DropConnect on the conv weights",
    )
    hidden_size: int = Field(128, ge=1, description="CNN dense layer / RNN state size")
    rnn_layers: int = Field(1, ge=1, description="stacked RNN layers")
    rnn_dropout: RnnDropout = Field(
        "standard",
        description="RNN dropout on the input and output sequences: standard (a new mask each "
        "time step), variational (one mask per sequence), or recurrent (Gal & Ghahramani: one "
        "mask per sequence on each layer's input, on h_{t-1} and on the output)",
    )
    weight_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="RNN hidden-to-hidden weight drop (AWD-LSTM); gru/lstm"
    )

    # dropout schedule (dropkit.schedules): each dropout layer's rate times a factor over training
    dropout_schedule: Literal["constant", "linear", "early", "late", "curriculum"] = Field(
        "constant",
        description="early: rates until schedule_length, then 0; late: 0, then the rates from "
        "schedule_length on; linear: from 0 up to the rates over schedule_length; curriculum: "
        "rate * (1 - exp(-schedule_gamma * t))",
    )
    schedule_length: float = Field(
        0.0, ge=0.0, description="in epochs (fractions allowed): early/late switch, linear ramp"
    )
    schedule_gamma: float = Field(1.0, gt=0.0, description="curriculum's gamma, per epoch")
    schedule_per: Literal["epoch", "step"] = Field(
        "step", description="update the rates once per optimiser step or once per epoch"
    )

    # optimisation
    optimizer: Literal["adam", "sgd"] = Field("adam", description="optimiser")
    lr: float = Field(1e-3, gt=0.0, description="learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    batch_size: int = Field(100, ge=1, description="training examples per step")
    # learning-rate schedule, stepped once per epoch
    lr_schedule: Literal["constant", "step", "exponential", "cosine"] = Field(
        "constant",
        description="constant; step (times lr_gamma every lr_step epochs); exponential (times "
        "lr_gamma each epoch); cosine (to 0 over the epochs)",
    )
    lr_step: int = Field(10, ge=1, description="lr_schedule=step: epochs between decays")
    lr_gamma: float = Field(
        0.1, gt=0.0, le=1.0, description="lr_schedule=step/exponential: factor per decay"
    )
    epochs: int = Field(20, ge=1, description="passes over the training set")
    mask_share: int = Field(
        1,
        ge=1,
        description="k data-parallel ranks with one seed: each dropout mask drawn for "
        "batch_size/k rows and tiled over the k chunks of the batch (lab.mask_share); 1 = off",
    )

    # regularizers
    l2: float = Field(
        0.0, ge=0.0, description="adds l2 * sum(w**2) over weight matrices to the loss"
    )
    l1: float = Field(
        0.0, ge=0.0, description="adds l1 * sum(|w|) over weight matrices to the loss"
    )
    max_norm: float | None = Field(
        None, gt=0.0, description="cap on each unit's incoming weight norm"
    )
    early_stopping: int = Field(
        0, ge=0, description="patience in evaluations (epochs) on val loss; 0 = off"
    )
    augment_shift: int = Field(
        0, ge=0, description="random shift of up to this many samples/pixels"
    )
    augment_noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to inputs")

    # running
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="where to train: cpu, cuda, or auto (cuda when available)"
    )
    threads: int = Field(1, ge=1, description="torch.set_num_threads")
    eval_train_max: int = Field(10_000, ge=1, description="train metrics on at most this many")
    eval_every: int = Field(
        1, ge=1, description="evaluate, log and checkpoint every this many epochs (and the last)"
    )
    plots: bool = Field(True, description="write curves.png in the run directory")

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_spelling(cls, value: Any) -> Any:
        # One spelling everywhere (fashion_mnist); the dashed one the other commands used is accepted.
        if isinstance(value, str) and ":" not in value:
            return value.replace("-", "_")
        return value

    @field_validator("batchnorm", mode="before")
    @classmethod
    def _none_is_a_choice(cls, value: Any) -> Any:
        # batchnorm=none on the command line reads as null: here it is the choice "none"
        return "none" if value is None else value

    @field_validator("dataset", "model")
    @classmethod
    def _known_or_import_path(cls, value: str, info: Any) -> str:
        from dropkit.lab._imports import is_import_path

        known = DATASETS if info.field_name == "dataset" else MODELS
        if value in known or is_import_path(value):
            return value
        example = "load" if info.field_name == "dataset" else "build"
        raise ValueError(
            f"must be one of {', '.join(known)}, or an import path pkg.module:{example}; "
            f"got {value!r}"
        )

    @field_validator("widths", "channels", "p_hidden", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        # "100,100" or "[100, 100]" from the command line; a bare number means one entry.
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            return tuple(v.strip() for v in text.split(",") if v.strip())
        if isinstance(value, (int, float)):
            return (value,)
        return value

    @field_validator("p_hidden")
    @classmethod
    def _check_rates(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 <= p < 1.0 for p in value):
            raise ValueError(f"each rate must be in [0, 1), got {list(value)}")
        return value

    @field_validator("widths", "channels")
    @classmethod
    def _check_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"sizes must be positive, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        n_hidden = {"mlp": len(self.widths), "cnn": len(self.channels) + 1}.get(self.model)
        if n_hidden is not None and len(self.p_hidden) not in (1, n_hidden):
            raise ValueError(
                f"p_hidden has {len(self.p_hidden)} rates but the {self.model} has {n_hidden} "
                "hidden layers: give one rate for all or one per layer"
            )
        if self.dropout_schedule in ("linear", "early", "late") and not self.schedule_length:
            raise ValueError(
                f"dropout_schedule={self.dropout_schedule!r} needs schedule_length > 0 (epochs)"
            )
        if self.early_stopping and self.val_fraction == 0.0:
            raise ValueError("early_stopping needs a validation set: set val_fraction > 0")
        if self.dataset == "uci" and self.model != "mlp":
            raise ValueError("uci is tabular: only model=mlp applies")
        if self.dataset == "uci" and self.augment_shift:
            raise ValueError("augment_shift needs signals or images; uci is tabular")
        # The model builder refuses these too, but only once the data are loaded: say it now.
        if self.model in ("gru", "lstm") and self.batchnorm != "none":
            raise ValueError(f"batchnorm is for mlp and cnn models, not model={self.model}")
        if (
            self.model in ("gru", "lstm")
            and self.rnn_dropout == "recurrent"
            and self.weight_dropout
        ):
            raise ValueError(
                "rnn_dropout='recurrent' and weight_dropout > 0 cannot be combined (two RNN "
                "wrappers); use rnn_dropout='variational' with weight_dropout for AWD-LSTM's mix"
            )
        return self

    @model_validator(mode="after")
    def _check_mask_share(self) -> Config:
        k = self.mask_share
        if self.batch_size % k:
            raise ValueError(
                f"mask_share={k} must divide batch_size={self.batch_size}: the batch is k chunks "
                "(simulated ranks) of batch_size/mask_share rows"
            )
        weight_noise = {
            "mlp_dropout": self.model == "mlp" and self.mlp_dropout == "dropconnect",
            "conv_dropout": self.model == "cnn" and self.conv_dropout == "dropconnect",
            "weight_dropout": self.model in ("gru", "lstm") and self.weight_dropout > 0,
        }
        for key, on in weight_noise.items():
            if k > 1 and on:
                raise ValueError(
                    f"mask_share={k} needs per-sample dropout masks, but {key}="
                    f"{getattr(self, key)!r} drops weights (one mask per step, none per sample); "
                    "use mask_share=1"
                )
        return self

    def rates(self, n_layers: int) -> tuple[float, ...]:
        """``p_hidden`` expanded to one rate per hidden layer."""
        return self.p_hidden * n_layers if len(self.p_hidden) == 1 else self.p_hidden

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, /, **more: Any) -> Config:
        """Validate ``values`` (and keyword ``more``); ``ValueError`` names unknown keys and bad values."""
        merged = {**(values or {}), **more}
        unknown = sorted(set(merged) - set(cls.model_fields))
        if unknown:
            named = ", ".join(f"{k}{did_you_mean(k, cls.model_fields)}" for k in unknown)
            raise ValueError(
                f"Config: unknown key(s) {named}; valid keys are {', '.join(cls.model_fields)}"
            )
        try:
            return cls(**merged)
        except ValidationError as err:
            raise ValueError(f"Config: {'; '.join(map(_problem, err.errors()))}") from None

    def replace(self, **changes: Any) -> Config:
        """A validated copy with ``changes`` applied (a config variant overrides only what differs)."""
        return Config.build({**self.model_dump(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'p_hidden'?)`` for the closest of ``options`` (difflib), or ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _problem(error: Mapping[str, Any]) -> str:
    """One validation error as ``key: what is wrong, got value``, in dropkit's words.

    Our validators' messages already name the value; pydantic's own (``Input should be ...``) get
    the value appended; a choice field lists its choices and the closest one.
    """
    loc = ".".join(str(p) for p in error["loc"])
    value = error.get("input")
    if error["type"] in ("value_error", "assertion_error") and "error" in error.get("ctx", {}):
        text = str(error["ctx"]["error"])
    elif error["type"] == "literal_error" and error["loc"]:
        choices = typing.get_args(Config.model_fields[str(error["loc"][0])].annotation)
        text = (
            f"must be one of {', '.join(map(str, choices))}; got {value!r}"
            f"{did_you_mean(value, choices)}"
        )
    else:
        text = error["msg"].replace("Input should be", "must be")
        text += f" ({value!r})" if " got " in text else f", got {value!r}"
    return f"{loc}: {text}" if loc else text


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"none": None, "null": None, "true": True, "false": False}.get(text.lower(), text)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["lr=0.01", "widths=256,256"]`` -> ``{"lr": 0.01, "widths": "256,256"}``.

    Values are read as JSON where they parse (numbers, lists, true/false/null), else kept as text; the
    config's types then validate them.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override '{item}' is not of the form key=value")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _read_config_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML (``.yaml``/``.yml``) file holding one object of config keys."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"load_config: no config file '{path}'") from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise ValueError(f"load_config: cannot read '{path}' ({err})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(
                f"load_config: '{path}' is not valid YAML ({' '.join(str(err).split())})"
            ) from None
        kind = "YAML mapping"
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"load_config: '{path}' is not valid JSON ({err})") from None
        kind = "JSON object"
    if not isinstance(loaded, dict):
        raise ValueError(f"load_config: '{path}' must hold a {kind} of config keys")
    return loaded


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    base: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then ``base`` (a preset), then the file at ``path`` (JSON, or YAML for ``.yaml``
    and ``.yml``), then ``overrides``."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        values.update(_read_config_file(Path(path)))
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    values.update(overrides)
    return Config.build(values)


class FieldDoc(NamedTuple):
    """One config key as ``--help`` and the API reference show it (all text, for tables)."""

    key: str
    #: ``int``, ``float``, ``str``, ``bool``, ``ints``/``floats`` (lists, written ``1,2,3``), with
    #: ``or none`` when the key may be unset; for a key with choices, the choices joined by ``|``
    type: str
    #: the default as written on the command line (``100,100``, ``none``, ``true``)
    default: str
    #: the allowed values of a key with choices, else ``()``
    choices: tuple[str, ...]
    #: the allowed range, e.g. ``0 <= x < 1``; ``""`` when any value of the type is allowed
    bounds: str
    description: str


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "|".join(map(str, typing.get_args(annotation)))
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return {int: "ints", float: "floats"}.get(args[0], "list")
    if len(args) == 1 and type(None) in typing.get_args(annotation):  # X | None
        return f"{_type_name(args[0])} or none"
    return getattr(annotation, "__name__", str(annotation))


def _cli_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(_cli_text, value))
    return str(value)


def _bounds(field: Any) -> str:
    low = high = ""
    for m in field.metadata:
        if getattr(m, "ge", None) is not None:
            low = f"{m.ge} <= "
        elif getattr(m, "gt", None) is not None:
            low = f"{m.gt} < "
        if getattr(m, "lt", None) is not None:
            high = f" < {m.lt}"
        elif getattr(m, "le", None) is not None:
            high = f" <= {m.le}"
    if low and high:
        return f"{low}x{high}"
    if low:
        return f"x {'>=' if '<=' in low else '>'} {low.split()[0]}"
    if high:
        return f"x{high}"
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("bounds", ""))


def describe_fields() -> list[FieldDoc]:
    """Every config key, in declaration order: type, default, choices, range and description.

    What ``dropkit run --help`` prints and what the API reference tabulates; the same facts are in
    ``Config.model_fields`` (``annotation``, ``default``, ``description``, ``metadata``) and in
    ``Config.model_json_schema()``.
    """
    rows = []
    for key, field in Config.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if typing.get_origin(field.annotation) is Literal:
            choices = tuple(map(str, typing.get_args(field.annotation)))
        else:
            choices = tuple(extra.get("known", ()))
        kind = str(extra["choices"]) if "choices" in extra else _type_name(field.annotation)
        rows.append(
            FieldDoc(
                key=key,
                type=kind,
                default=_cli_text(field.default),
                choices=choices,
                bounds=_bounds(field),
                description=field.description or "",
            )
        )
    return rows
