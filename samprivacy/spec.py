"""Configuration parsed once at the edge into frozen typed objects.

`TrialConfig` is one trial: what the `samprivacy trial` command, the sweep's Ray trainable and the
reports all pass around. (`SweepSpec`, the YAML sweep description, lives here too.)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import operator
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator,
                      model_serializer, model_validator)
from pydantic_core import PydanticCustomError

from samprivacy.errors import ConfigError

OPTIMIZERS = ("sgd", "sam", "asam", "sharpreg")
SINGLE_QUERY_ATTACKS = ("correctness", "confidence", "entropy", "modified_entropy", "loss")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrialConfig(_Frozen):
    """Everything that determines one trial: data, model, optimizer, budget, seed, attacks."""

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    model: str | None = Field(None, description="model name; None picks the dataset's default")
    hidden: tuple[int, ...] | None = Field(None, description="hidden sizes of the FC model")
    optimizer: Literal["sgd", "sam", "asam", "sharpreg"] = "sgd"
    base_optimizer: Literal["sgd", "adam"] = "sgd"
    rho: float | None = Field(None, ge=0.0, description="radius ρ; sam/asam/sharpreg only; None = preset default")
    lam: float | None = Field(None, description="sharpness weight λ; only sharpreg takes it")
    xi: float | None = Field(None, description="anti-overfitting weight ξ; only sharpreg takes it")
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0)
    split_seed: int | None = Field(None, ge=0, description="seed of the member/non-member split; None = seed")
    attacks: tuple[str, ...] | None = Field(None, description="attack names; None runs every attack")
    device: str | None = Field(None, description="'cpu', 'cuda', ...; None picks CUDA when available")

    @field_validator("rho", "lr", "momentum", "weight_decay", "lam", "xi")
    @classmethod
    def _finite(cls, v: float | None, info) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"`{info.field_name}` must be a finite number, got {v}")
        return v

    @model_validator(mode="after")
    def _sharpreg_only(self) -> "TrialConfig":
        if self.optimizer == "sgd" and self.rho is not None:
            raise ValueError("`rho` applies only to optimizers 'sam', 'asam' and 'sharpreg' (got optimizer 'sgd'); "
                             "drop `rho` or choose one of those")
        if self.optimizer != "sharpreg":
            for name in ("lam", "xi"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"`{name}` applies only to optimizer 'sharpreg' (got optimizer '{self.optimizer}'); "
                        f"drop `{name}` or use --optimizer sharpreg"
                    )
        return self


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: `field.path: message` (pydantic's locations joined with dots)."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path or '<top level>'}: {message}" + (f" (got {err['input']!r})" if "input" in err
                                                                and not isinstance(err["input"], dict) else ""))
    return "\n".join(lines)


def parse_trial_config(fields: dict) -> TrialConfig:
    """Build a TrialConfig from user input, turning pydantic's errors into one clear ConfigError."""
    try:
        return TrialConfig(**fields)
    except ValidationError as exc:
        raise ConfigError("invalid trial configuration:\n" + format_validation_error(exc)) from None


# ----------------------------------------------------------------------------------------------------------------
# SweepSpec: a sweep written as data (sweeps/*.yaml). Reference: docs/spec.md.

DATASET_NAMES = ("digits", "longtail", "purchase100", "texas100", "cifar10", "cifar100")  # = learn.data.DATASETS
ATTACK_NAMES = (*SINGLE_QUERY_ATTACKS, "confidence_classwise", "entropy_classwise", "modified_entropy_classwise",
                "nn", "label_only")  # = audit.ATTACKS (a test keeps them equal; spec.py must not import torch)
OBJECTIVE_METRICS = ("test_acc", "val_acc", "train_acc", "attack_acc", "attack_auc", "attack_advantage",
                     "attack_tpr_at_fpr_0.001", "attack_tpr_at_fpr_0.01", "single_query_acc", "label_only_acc")
SAMPLER_NAMES = ("tpe", "nsga2", "gp", "random", "grid")
OPTIMIZER_PARAMS = {"sgd": (), "sam": ("rho",), "asam": ("rho",), "sharpreg": ("rho", "lam", "xi")}
_DIRECTIONS = {"max": "max", "maximize": "max", "maximise": "max", "min": "min", "minimize": "min", "minimise": "min"}
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_EXTRA_BOUNDS = {"lam": (at.Gt(0.0),), "xi": (at.Ge(0.0),)}  # DESIGN: SharpReg is λ > 0; ξ only shrinks L(w)
_OPS = {at.Ge: (">=", "ge", operator.ge), at.Gt: (">", "gt", operator.gt),
        at.Le: ("<=", "le", operator.le), at.Lt: ("<", "lt", operator.lt)}

Problem = tuple[str, str]  # (field path, message)


class SpecError(ConfigError):
    """An invalid sweep spec: `problems` holds every (field path, message); the message lists them one per line."""

    def __init__(self, problems: list[Problem], source: str | None = None, headline: str | None = None):
        self.problems, self.source = list(problems), source
        n = len(self.problems)
        headline = headline or f"invalid sweep spec ({n} problem{'s' if n != 1 else ''}):"
        lines = [f"  {path or '<top level>'}: {message}" for path, message in self.problems]
        super().__init__("\n".join([f"{source}: {headline}" if source else headline, *lines]))


def _raise(problems: list[Problem]) -> None:
    """Report every problem a validator found; paths are relative to where pydantic is validating."""
    if problems:
        raise PydanticCustomError("spec", "{text}", {"text": "; ".join(f"{p}: {m}" for p, m in problems),
                                                      "problems": tuple(problems)})


def _did_you_mean(word: object, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def field_kind(name: str) -> str | tuple:
    """TrialConfig's type for field `name`: "int", "float", or the tuple of allowed strings of a Literal."""
    annotation = TrialConfig.model_fields[name].annotation
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return "int" if int in (get_args(annotation) or (annotation,)) else "float"


class _Spec(_Frozen):
    model_config = ConfigDict(allow_inf_nan=False)


class Param(_Spec):
    """One hyperparameter: a fixed value, a range {low, high, log?, step?} or {choices: [...]}.

    Values are typed `Any` and checked by hand so that a bad value gives one line, not one per union member;
    whether a range is int or float follows the TrialConfig field it feeds (epochs: int, lr: float).
    """

    value: Any = None
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            _raise([("", f"a list is not a distribution; write {{choices: {list(data)}}}")])
        return data if isinstance(data, dict) else {"value": data}

    @model_validator(mode="after")
    def _shape(self) -> "Param":
        given = [k for k, on in (("value", self.value is not None), ("range", self.kind == "range"),
                                 ("choices", self.choices is not None)) if on]
        if len(given) != 1:
            _raise([("", "give exactly one of a value, {low, high} or {choices: [...]}"
                     + (f", not {' and '.join(given)}" if given else ""))])
        problems = []
        if self.kind == "fixed" and not isinstance(self.value, (bool, int, float, str)):
            problems.append(("", f"must be a number or a string, got {self.value!r}"))
        if self.kind != "range":
            problems += [(k, "applies only to a {low, high} range; remove it")
                         for k, given in (("log", self.log), ("step", self.step is not None)) if given]
        else:
            for key in ("low", "high"):
                v = getattr(self, key)
                if v is None or not _is_number(v) or not math.isfinite(v):
                    problems.append((key, "required in a range: give both low and high" if v is None
                                     else f"must be a finite number, got {v!r}"))
            _raise(problems)
            if self.low > self.high:
                problems.append(("low", f"must be <= high ({self.high}), got {self.low}; swap them"))
            if self.log and self.low <= 0:
                problems.append(("low", f"must be > 0 with log: true, got {self.low}; raise low or drop log"))
            if self.step is not None and (not _is_number(self.step) or not self.step > 0):
                problems.append(("step", f"must be a number > 0, got {self.step!r}"))
            elif self.step is not None and self.log:
                problems.append(("step", "cannot be combined with log: true (Optuna); drop one of them"))
        if self.choices is not None:
            if not self.choices:
                problems.append(("choices", "must list at least one value"))
            seen = set()
            for i, c in enumerate(self.choices):
                if not isinstance(c, (bool, int, float, str)):
                    problems.append((f"choices[{i}]", f"must be a number or a string, got {c!r}"))
                elif (type(c), c) in seen:
                    problems.append((f"choices[{i}]", f"{c!r} is listed twice; list each value once"))
                else:
                    seen.add((type(c), c))
        _raise(problems)
        return self

    @property
    def kind(self) -> str:
        return "range" if self.low is not None or self.high is not None else (
            "choices" if self.choices is not None else "fixed")

    @property
    def is_fixed(self) -> bool:
        """One possible value: never suggested to Optuna (so it is no search dimension)."""
        return (self.kind == "fixed" or (self.kind == "choices" and len(self.choices) == 1)
                or (self.kind == "range" and self.low == self.high))

    @property
    def fixed(self) -> Any:
        return {"fixed": self.value, "choices": (self.choices or (None,))[0], "range": self.low}[self.kind]

    def values(self, integer: bool) -> tuple | None:
        """Every value it can take, or None for a continuous range (a grid needs finite parameters)."""
        if self.kind != "range":
            return (self.value,) if self.kind == "fixed" else self.choices
        if integer:
            return tuple(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            return (self.low,) if self.low == self.high else None
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return tuple(round(self.low + i * self.step, 12) for i in range(n + 1))

    def extent(self) -> tuple[float, float]:
        """(smallest, largest) value of a numeric parameter."""
        vals = (self.low, self.high) if self.kind == "range" else self.values(False)
        return min(vals), max(vals)

    @model_serializer
    def _compact(self) -> Any:
        if self.kind == "fixed":
            return self.value
        keys = ("low", "high", "log", "step") if self.kind == "range" else ("choices",)
        return {k: list(v) if k == "choices" else v
                for k in keys if (v := getattr(self, k)) is not None and v is not False}


def _param_problems(name: str, p: Param) -> list[Problem]:
    """Check `p` against TrialConfig's field `name`: its type, its Literal values and its bounds (paths relative)."""
    kind = field_kind(name)
    entries = {"fixed": [("", p.value)], "range": [("low", p.low), ("high", p.high)],
               "choices": [(f"choices[{i}]", c) for i, c in enumerate(p.choices or ())]}[p.kind]
    if isinstance(kind, tuple):
        if p.kind == "range":
            return [("", f"takes one of {', '.join(kind)}: give a value or {{choices: [...]}}, not a range")]
        return [(path, f"got {v!r}; {_did_you_mean(v, kind)}use one of {', '.join(kind)}")
                for path, v in entries if v not in kind]
    problems = []
    if kind == "int" and p.step is not None and not isinstance(p.step, int):
        problems.append(("step", f"must be an integer, got {p.step!r}"))
    for path, v in entries:
        if kind == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
            problems.append((path, f"must be an integer, got {v!r}"))
        elif not _is_number(v) or not math.isfinite(v):
            problems.append((path, f"must be a finite number, got {v!r}"))
        else:
            for bound in (*TrialConfig.model_fields[name].metadata, *_EXTRA_BOUNDS.get(name, ())):
                symbol, attr, holds = _OPS[type(bound)]
                if not holds(v, getattr(bound, attr)):
                    problems.append((path, f"must be {symbol} {getattr(bound, attr)}, got {v}"))
    return problems


class _ParamGroup(_Spec):
    def params(self) -> dict[str, Param]:
        """The given Params by TrialConfig field name (absent ones keep TrialConfig's default)."""
        return {k: v for k, v in self if isinstance(v, Param)}

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data: Any) -> Any:
        return {} if data is None else data  # `sgd:` with nothing after it is an empty mapping

    @field_validator("*")
    @classmethod
    def _fits_field(cls, v: Any, info) -> Any:
        if isinstance(v, Param):  # one validator per field, so a bad sibling does not hide this field's problems
            _raise(_param_problems(info.field_name, v))
        return v


class OptimizerSpace(_ParamGroup):
    """One optimizer's own hyperparameters; which apply to which optimizer is checked by SweepSpec."""

    rho: Param | None = None
    lam: Param | None = None
    xi: Param | None = None


class TrainSpace(_ParamGroup):
    """Training fields of TrialConfig: Params (searchable) plus fixed model settings."""

    epochs: Param | None = None
    batch_size: Param | None = None
    lr: Param | None = None
    momentum: Param | None = None
    weight_decay: Param | None = None
    schedule: Param | None = None
    base_optimizer: Param | None = None
    model: str | None = None
    hidden: tuple[PositiveInt, ...] | None = None
    split_seed: NonNegativeInt | None = None


class SamplerSpec(_Spec):
    name: str = "tpe"
    seed: NonNegativeInt | None = 0
    n_startup_trials: NonNegativeInt | None = Field(None, description="tpe/gp: random trials before modelling")
    population_size: int | None = Field(None, ge=2, description="nsga2: individuals per generation (default 50)")

    @model_validator(mode="after")
    def _options(self) -> "SamplerSpec":
        problems = []
        if self.name not in SAMPLER_NAMES:
            problems.append(("name", f"unknown sampler {self.name!r}; {_did_you_mean(self.name, SAMPLER_NAMES)}"
                                     f"use one of {', '.join(SAMPLER_NAMES)}"))
        if self.n_startup_trials is not None and self.name not in ("tpe", "gp"):
            problems.append(("n_startup_trials", f"applies only to tpe and gp, not {self.name}; remove it"))
        if self.population_size is not None and self.name != "nsga2":
            problems.append(("population_size", f"applies only to nsga2, not {self.name}; remove it"))
        _raise(problems)
        return self


class Resources(_Spec):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0, description="fractions < 1 pack several trials on one GPU")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            _raise([("", f"must be a fraction <= 1 or a whole number (Ray's rule), got {v}; use {math.ceil(v)}")])
        return v


_MLFLOW_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
_OPTUNA_SCHEMES = ("sqlite", "postgresql", "mysql")


def _scheme(url: str) -> str | None:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else None


class StorageSpec(_Spec):
    workdir: str | None = Field(None, description="None = ./runs/<name>")
    tune_storage: str | None = Field(None, description="Ray Tune storage_path (s3://, shared dir); None = workdir/tune")
    mlflow_uri: str | None = Field(None, description="None = sqlite:///<workdir>/mlflow.db")
    optuna_url: str | None = Field(None, description="None = sqlite:///<workdir>/optuna.db")

    @model_validator(mode="after")
    def _urls(self) -> "StorageSpec":
        problems = []
        if self.mlflow_uri is not None and _scheme(self.mlflow_uri) not in _MLFLOW_SCHEMES:
            problems.append(("mlflow_uri", f"MLflow 3 needs a database or server URI (no file store), got "
                             f"{self.mlflow_uri!r}; use sqlite:///path/mlflow.db or http://host:5000"))
        if self.optuna_url is not None and _scheme(self.optuna_url) not in _OPTUNA_SCHEMES:
            problems.append(("optuna_url", f"must be a database URL for Optuna's RDBStorage, got {self.optuna_url!r};"
                             " use sqlite:///path/optuna.db or postgresql://user@host:5432/optuna"))
        _raise(problems)
        return self


class ResolvedStorage(_Spec):
    """Where a sweep's state lives, with every default filled in (absolute paths: Ray needs them)."""

    workdir: Path
    tune_storage: str
    mlflow_uri: str
    optuna_url: str


class SweepSpec(_Spec):
    """A sweep: what to search (datasets, seeds, optimizers' conditional ranges, training), how (objectives,
    sampler, trial count, concurrency, resources) and where state lives. Valid once constructed."""

    name: str
    description: str = ""
    datasets: tuple[str, ...] = ("digits",)
    data_root: str | None = None
    download: bool = False
    seeds: tuple[int, ...] = (0,)
    optimizers: dict[str, OptimizerSpace]
    train: TrainSpace = TrainSpace()
    attacks: tuple[str, ...] | None = None
    objectives: dict[str, str] = Field(default_factory=lambda: {"test_acc": "max", "attack_acc": "min"})
    sampler: SamplerSpec = SamplerSpec()
    trials: PositiveInt | None = Field(None, description="None only for grid: the whole grid")
    max_concurrent: PositiveInt = 1
    resources: Resources = Resources()
    max_failures: NonNegativeInt = Field(1, description="retries per trial (Tune FailureConfig)")
    storage: StorageSpec = StorageSpec()

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.fullmatch(v):
            example = re.sub(r"[^a-z0-9_-]+", "-", v.lower()).strip("-_")[:63] or "my-sweep"
            _raise([("", f"must be a slug of lowercase letters, digits, '-' and '_' (at most 63, starting with a "
                         f"letter or digit), got {v!r}; e.g. {example!r}")])
        return v

    @field_validator("datasets", "seeds", "attacks")
    @classmethod
    def _names(cls, v: tuple | None, info) -> tuple | None:
        if v is None:
            return v
        known = {"datasets": DATASET_NAMES, "attacks": ATTACK_NAMES}.get(info.field_name)
        problems = [] if v else [("", "must list at least one entry")]
        for i, item in enumerate(v):
            if known is not None and item not in known:
                problems.append((f"[{i}]", f"unknown name {item!r}; {_did_you_mean(item, known)}"
                                           f"use one of {', '.join(known)}"))
            elif known is None and item < 0:
                problems.append((f"[{i}]", f"must be >= 0, got {item}"))
            elif item in v[:i]:
                problems.append((f"[{i}]", f"{item!r} is listed twice; list each once"))
        _raise(problems)
        # datasets and seeds are sets: a canonical order keeps Optuna's categorical choices (and the hash) the
        # same when the YAML lists them differently
        if info.field_name == "datasets":
            return tuple(d for d in DATASET_NAMES if d in v)
        return tuple(sorted(v)) if info.field_name == "seeds" else v

    @field_validator("optimizers", mode="wrap")
    @classmethod
    def _optimizers(cls, v: Any, handler) -> dict[str, OptimizerSpace]:
        # wrap: which keys apply to which optimizer is checked on the raw mapping, so it is reported together
        # with the problems inside each optimizer's ranges
        problems: list[Problem] = []
        if isinstance(v, (list, tuple)):
            example = ", ".join(f"{o}: {{}}" for o in v)
            _raise([("", f"must map each optimizer to its parameters, e.g. {{{example}}}")])
        if isinstance(v, dict):
            problems += [] if v else [("", "must name at least one optimizer, e.g. {sgd: {}, sam: {rho: 0.05}}")]
            for name, keys in v.items():
                if name not in OPTIMIZERS:
                    problems.append((str(name), f"unknown optimizer; {_did_you_mean(name, OPTIMIZERS)}"
                                                f"use one of {', '.join(OPTIMIZERS)}"))
                    continue
                keys = {k for k, x in keys.items() if x is not None} if isinstance(keys, dict) else set()
                for key in sorted(keys & {"rho", "lam", "xi"} - set(OPTIMIZER_PARAMS[name])):
                    takers = [o for o, ks in OPTIMIZER_PARAMS.items() if key in ks]
                    problems.append((f"{name}.{key}", f"{name} takes no {key}; remove it or move it under "
                                                      f"{' or '.join(takers)}"))
                if name == "sharpreg":
                    problems += [(f"sharpreg.{k}", f"required for sharpreg (the paper uses {k}: {d})")
                                 for k, d in (("lam", 1.5), ("xi", 0.3)) if k not in keys]
        try:
            v = handler(v)
        except ValidationError as exc:
            _raise(problems + _problems(exc))
        space = v.get("sharpreg")
        if not problems and space is not None:
            (lam_low, _), (_, xi_high) = space.lam.extent(), space.xi.extent()
            if 1 + lam_low - xi_high <= 0:  # the weight (1 + λ − ξ) of L(w) must stay positive
                problems.append(("sharpreg", f"1 + lam - xi must stay positive, but lam can be {lam_low} "
                                             f"with xi {xi_high}; raise lam or lower xi"))
        _raise(problems)
        return {name: v[name] for name in OPTIMIZERS if name in v}  # canonical order: reordering YAML keys is no change

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: dict[str, str]) -> dict[str, str]:
        problems = [] if len(v) >= 2 else [("", f"needs at least 2 objectives for a Pareto front, got {len(v)}; "
                                               "e.g. {test_acc: max, attack_acc: min}")]
        for metric, direction in v.items():
            if metric not in OBJECTIVE_METRICS:
                problems.append((metric, f"unknown metric; {_did_you_mean(metric, OBJECTIVE_METRICS)}"
                                         f"use one of {', '.join(OBJECTIVE_METRICS)}"))
            if direction.lower() not in _DIRECTIONS:
                problems.append((metric, f"direction must be max or min, got {direction!r}"))
        _raise(problems)
        return {metric: _DIRECTIONS[direction.lower()] for metric, direction in v.items()}

    @model_validator(mode="after")
    def _budget(self) -> "SweepSpec":
        problems = []
        if self.sampler.name == "grid":
            problems += [(path, "sampler grid needs finite values: give {choices: [...]} or a step")
                         for path, p, integer in self._searched() if p.values(integer) is None]
            size = self.grid_size()
            if not problems and self.trials is not None and self.trials > size:
                problems.append(("trials", f"the grid has {size} combinations; set trials <= {size} "
                                           "or leave it out to run the whole grid"))
        elif self.trials is None:
            problems.append(("trials", f"required for sampler {self.sampler.name}; e.g. trials: 16"))
        _raise(problems)
        return self

    def _searched(self):
        """(path, Param, integer?) of every Param that varies, optimizers' and training's."""
        groups = [(f"optimizers.{o}", s) for o, s in self.optimizers.items()] + [("train", self.train)]
        return [(f"{prefix}.{name}", p, field_kind(name) == "int")
                for prefix, group in groups for name, p in group.params().items() if not p.is_fixed]

    @property
    def objective_names(self) -> tuple[str, ...]:
        return tuple(self.objectives)

    @property
    def objective_modes(self) -> tuple[str, ...]:
        """'max' or 'min' per objective, in order (Ray Tune's `mode` list; Optuna wants maximize/minimize)."""
        return tuple(self.objectives.values())

    @property
    def n_trials(self) -> int:
        return self.trials if self.trials is not None else self.grid_size()

    def grid_size(self) -> int | None:
        """How many distinct trial configurations the spec allows; None if any searched range is continuous."""
        def size(group) -> int | None:
            sizes = [p.values(field_kind(n) == "int") for n, p in group.params().items()]
            return None if None in sizes else math.prod(len(s) for s in sizes)
        per_optimizer = [size(s) for s in self.optimizers.values()]
        common = size(self.train)
        if common is None or None in per_optimizer:
            return None
        return len(self.datasets) * len(self.seeds) * common * sum(per_optimizer)

    def fixed_trial_fields(self) -> dict[str, Any]:
        """TrialConfig fields that are the same in every trial of the sweep."""
        fields: dict[str, Any] = {"data_root": self.data_root, "download": self.download, "attacks": self.attacks}
        fields |= {k: v for k in ("model", "hidden", "split_seed") if (v := getattr(self.train, k)) is not None}
        groups = [self.train] + (list(self.optimizers.values()) if len(self.optimizers) == 1 else [])
        fields |= {k: p.fixed for g in groups for k, p in g.params().items() if p.is_fixed}
        for key, options in (("dataset", self.datasets), ("seed", self.seeds), ("optimizer", tuple(self.optimizers))):
            if len(options) == 1:
                fields[key] = options[0]
        return fields

    def canonical_json(self) -> str:
        """Every setting, defaults included, keys sorted: equal specs give equal text whatever the YAML looked like."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """sha256 of canonical_json(): tag runs with it so resume can tell an edited spec."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def resolved_storage(self, base: str | Path | None = None) -> ResolvedStorage:
        """Fill in storage defaults: ./runs/<name> (relative to `base`, default the working directory) and
        SQLite files in it."""
        workdir = (Path(base or Path.cwd()) / (self.storage.workdir or f"runs/{self.name}")).resolve()
        return ResolvedStorage(
            workdir=workdir, tune_storage=self.storage.tune_storage or str(workdir / "tune"),
            mlflow_uri=self.storage.mlflow_uri or f"sqlite:///{workdir / 'mlflow.db'}",
            optuna_url=self.storage.optuna_url or f"sqlite:///{workdir / 'optuna.db'}")


_ALL_KEYS = sorted({k for m in (SweepSpec, TrainSpace, OptimizerSpace, SamplerSpec, Resources, StorageSpec, Param)
                    for k in m.model_fields})
_BOUND_TYPES = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
                "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
_TYPE_MESSAGES = {"int": "must be an integer", "float": "must be a number", "bool": "must be true or false",
                  "string": "must be a string", "tuple": "must be a list", "list": "must be a list",
                  "dict": "must be a mapping (key: value)", "model": "must be a mapping (key: value)",
                  "finite": "must be a finite number"}


def _join(*parts: object) -> str:
    out = ""
    for part in parts:
        part = f"[{part}]" if isinstance(part, int) else str(part)
        out += part if not out or part.startswith("[") or not part else f".{part}"
    return out


def _message(err: dict) -> str:
    """pydantic's error in the spec's words, with the bad value and the fix."""
    kind, got = err["type"], f", got {err.get('input')!r}"
    if kind == "missing":
        return "required; add it (docs/spec.md describes every key)"
    if kind == "extra_forbidden":
        return f"unknown key; {_did_you_mean(err['loc'][-1], _ALL_KEYS)}remove it or fix the spelling (docs/spec.md)"
    if kind in _BOUND_TYPES:
        symbol, key = _BOUND_TYPES[kind]
        return f"must be {symbol} {err['ctx'][key]}{got}"
    prefix = kind.split("_")[0]
    return _TYPE_MESSAGES[prefix] + got if prefix in _TYPE_MESSAGES else err["msg"].removeprefix("Value error, ") + got


def _problems(exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = _join(*err["loc"])
        if err["type"] == "spec":
            out += [(_join(loc, sub) if sub else loc, message) for sub, message in err["ctx"]["problems"]]
        else:
            out.append((loc, _message(err)))
    return out


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}; keep only one",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 reads 5e-4 as a string (it wants 5.0e-4); read it as the float everyone means.
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                                  list("-+0123456789."))


def parse_spec(data: Any, source: str | None = None) -> SweepSpec:
    """Validate a spec given as a mapping; SpecError lists every problem with its field path."""
    if not isinstance(data, dict):
        raise SpecError([], source, f"a sweep spec is a mapping (name: ..., optimizers: ...), "
                                    f"got {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc), source) from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec; SpecError names the file and every problem in it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([], str(path), "no such file; check the path (example specs live in sweeps/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([], str(path), f"cannot read the file ({type(exc).__name__}: {exc})") from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError([], str(path), f"invalid YAML: {exc}") from None
    return parse_spec(data, str(path))
