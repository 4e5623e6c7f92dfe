"""Search-space values: `Param` (fixed, range or choices) and the optimizer / training groups."""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Literal, get_args, get_origin

import annotated_types as at
from pydantic import (
    ConfigDict,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic import ValidationInfo

from samprivacy import catalog
from samprivacy.spec.errors import Problem, did_you_mean, raise_problems
from samprivacy.spec.trial import TrialConfig, _Frozen

# ----------------------------------------------------------------------------------------------------------------
# SweepSpec: a sweep written as data (sweeps/*.yaml). Reference: docs/spec.md. Every name comes from the catalog.

DATASET_NAMES = tuple(catalog.DATASETS)
ATTACK_NAMES = tuple(catalog.ATTACKS)
OBJECTIVE_METRICS = catalog.objective_metrics()
MODEL_NAMES = tuple(catalog.MODELS)
SAMPLER_NAMES = catalog.SAMPLER_NAMES
_DIRECTIONS = {"max": "max", "maximize": "max", "maximise": "max", "min": "min", "minimize": "min", "minimise": "min"}
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_EXTRA_BOUNDS = {"lam": (at.Gt(0.0),), "xi": (at.Ge(0.0),)}  # the paper: SharpReg is λ > 0; ξ only shrinks L(w)
_OPS = {at.Ge: (">=", "ge", operator.ge), at.Gt: (">", "gt", operator.gt),
        at.Le: ("<=", "le", operator.le), at.Lt: ("<", "lt", operator.lt)}


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
            raise_problems([("", f"a list is not a distribution; write {{choices: {list(data)}}}")])
        return data if isinstance(data, dict) else {"value": data}

    @model_validator(mode="after")
    def _shape(self) -> "Param":
        given = [k for k, on in (("value", self.value is not None), ("range", self.kind == "range"),
                                 ("choices", self.choices is not None)) if on]
        if len(given) != 1:
            raise_problems([("", "give exactly one of a value, {low, high} or {choices: [...]}"
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
            raise_problems(problems)
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
        raise_problems(problems)
        return self

    @property
    def kind(self) -> str:
        return "range" if self.low is not None or self.high is not None else (
            "choices" if self.choices is not None else "fixed")

    @property
    def is_fixed(self) -> bool:
        """One possible value: never suggested to Optuna (so it is no search dimension)."""
        return (self.kind == "fixed" or (self.kind == "choices" and len(self.choices or ()) == 1)
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
        vals = (self.low, self.high) if self.kind == "range" else (self.values(False) or ())
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
        return [(path, f"got {v!r}; {did_you_mean(v, kind)}use one of {', '.join(kind)}")
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
    def _fits_field(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, Param):  # one validator per field, so a bad sibling does not hide this field's problems
            raise_problems(_param_problems(str(info.field_name), v))
        return v


class OptimizerSpace(_ParamGroup):
    """One optimizer's own hyperparameters (catalog.OPTIMIZER_PARAMS); which apply to which optimizer is checked
    by SweepSpec."""

    rho: Param | None = None
    lam: Param | None = None
    xi: Param | None = None
    swa_start: Param | None = None
    swa_lr: Param | None = None


class DefenseSpace(_ParamGroup):
    """A defense on the front (catalog.DEFENSES or TRAINING_DEFENSES): the optimizer it runs with and that
    optimizer's own parameters, label smoothing and epoch selection, and the defense's parameters. Which apply
    is checked by SweepSpec."""

    optimizer: str = "sgd"
    rho: Param | None = None
    lam: Param | None = None
    xi: Param | None = None
    label_smoothing: Param | None = None
    selection: Param | None = None
    max_grad_norm: Param | None = None
    noise_multiplier: Param | None = None
    target_epsilon: Param | None = None
    target_delta: Param | None = None
    adv_alpha: Param | None = None
    adv_steps: Param | None = None
    selena_k: Param | None = None
    selena_l: Param | None = None
    memguard_budget: Param | None = None


class TrainSpace(_ParamGroup):
    """Training fields of TrialConfig: Params (searchable) plus fixed model settings."""

    epochs: Param | None = None
    batch_size: Param | None = None
    lr: Param | None = None
    momentum: Param | None = None
    weight_decay: Param | None = None
    schedule: Param | None = None
    base_optimizer: Param | None = None
    label_smoothing: Param | None = None
    selection: Param | None = None
    model: str | None = None
    hidden: tuple[PositiveInt, ...] | None = None
    split_seed: NonNegativeInt | None = None
    augment: bool | None = None
    amp: bool | None = None

