"""`SweepSpec`: a sweep written as data (sweeps/*.yaml); reference: docs/spec.md."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import ValidationInfo, ValidatorFunctionWrapHandler

from samprivacy.spec.errors import Problem, did_you_mean, raise_problems
from samprivacy.spec.errors import problems as error_problems
from samprivacy.spec.params import (
    _DIRECTIONS,
    _SLUG,
    ATTACK_NAMES,
    DATASET_NAMES,
    MODEL_NAMES,
    OBJECTIVE_METRICS,
    SAMPLER_NAMES,
    DefenseSpace,
    OptimizerSpace,
    Param,
    TrainSpace,
    _ParamGroup,
    _Spec,
    field_kind,
)
from samprivacy import catalog
from samprivacy.spec import defenses as defense_spaces
from samprivacy.spec.trial import (Population, population_problems,
                                  resolve_attacks)


class SamplerSpec(_Spec):
    name: str = "tpe"
    seed: NonNegativeInt | None = 0
    n_startup_trials: NonNegativeInt | None = Field(None, description="tpe/gp: random trials before modelling")
    population_size: int | None = Field(None, ge=2, description="nsga2: individuals per generation (default 50)")

    @model_validator(mode="after")
    def _options(self) -> "SamplerSpec":
        problems = []
        if self.name not in SAMPLER_NAMES:
            problems.append(("name", f"unknown sampler {self.name!r}; {did_you_mean(self.name, SAMPLER_NAMES)}"
                                     f"use one of {', '.join(SAMPLER_NAMES)}"))
        if self.n_startup_trials is not None and self.name not in ("tpe", "gp"):
            problems.append(("n_startup_trials", f"applies only to tpe and gp, not {self.name}; remove it"))
        if self.population_size is not None and self.name != "nsga2":
            problems.append(("population_size", f"applies only to nsga2, not {self.name}; remove it"))
        raise_problems(problems)
        return self


class Resources(_Spec):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0, description="fractions < 1 pack several trials on one GPU")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise_problems([("", f"must be a fraction <= 1 or a whole number (Ray's rule), got {v}; use {math.ceil(v)}")])
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
        raise_problems(problems)
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
    dataset_options: dict[str, dict[str, bool | int | float | str]] = Field(default_factory=dict, description=(
        "per dataset, its source's own options, e.g. {longtail: {n: 6000, binary: true}}"))
    seeds: tuple[int, ...] = (0,)
    repeats: PositiveInt = Field(1, description=(
        "seeds each configuration runs on (one Tune trial per seed; Optuna is told the mean). > 1: `seeds` lists "
        "exactly that many (default 0..repeats-1) and is no search dimension"))
    optimizers: dict[str, OptimizerSpace] = Field(default_factory=dict)
    defenses: dict[str, DefenseSpace] = Field(default_factory=dict, description=(
        "defenses on the front beside the optimizers, each with its own conditional parameters (docs/defenses.md)"))
    train: TrainSpace = TrainSpace()
    attacks: tuple[str, ...] | None = None
    population: Population | None = Field(None, description="K models per trial for LiRA / RMIA (docs/spec.md)")
    objectives: dict[str, str] = Field(default_factory=lambda: {"test_acc": "max", "attack_acc": "min"})
    sampler: SamplerSpec = SamplerSpec()
    trials: PositiveInt | None = Field(None, description="None only for grid: the whole grid")
    max_concurrent: PositiveInt = 1
    resources: Resources = Resources()
    max_failures: NonNegativeInt = Field(1, description="retries per trial (Tune FailureConfig)")
    checkpoint_interval_s: float = Field(10.0, ge=0.0, description=(
        "a trial checkpoints (and flushes its epoch curves to MLflow) at most this often, and after the last "
        "epoch; 0 = every epoch. A crashed trial loses at most this much training"))
    storage: StorageSpec = StorageSpec()

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.fullmatch(v):
            example = re.sub(r"[^a-z0-9_-]+", "-", v.lower()).strip("-_")[:63] or "my-sweep"
            raise_problems([("", f"must be a slug of lowercase letters, digits, '-' and '_' (at most 63, starting with a "
                         f"letter or digit), got {v!r}; e.g. {example!r}")])
        return v

    @model_validator(mode="before")
    @classmethod
    def _replicate_seeds(cls, data: Any) -> Any:
        # repeats: 3 without seeds means seeds 0, 1, 2 (the default (0,) would be one seed too few)
        if isinstance(data, dict) and "seeds" not in data and isinstance(data.get("repeats"), int) \
                and not isinstance(data["repeats"], bool) and data["repeats"] > 1:
            return {**data, "seeds": list(range(data["repeats"]))}
        return data

    @field_validator("datasets", "seeds", "attacks")
    @classmethod
    def _names(cls, v: tuple | None, info: ValidationInfo) -> tuple | None:
        if v is None:
            return v
        known = {"datasets": DATASET_NAMES, "attacks": ATTACK_NAMES}.get(str(info.field_name))
        problems = [] if v else [("", "must list at least one entry")]
        for i, item in enumerate(v):
            if known is not None and item not in known:
                problems.append((f"[{i}]", f"unknown name {item!r}; {did_you_mean(item, known)}"
                                           f"use one of {', '.join(known)}"))
            elif known is None and item < 0:
                problems.append((f"[{i}]", f"must be >= 0, got {item}"))
            elif item in v[:i]:
                problems.append((f"[{i}]", f"{item!r} is listed twice; list each once"))
        raise_problems(problems)
        # datasets and seeds are sets: a canonical order keeps Optuna's categorical choices (and the hash) the
        # same when the YAML lists them differently
        if info.field_name == "datasets":
            return tuple(d for d in DATASET_NAMES if d in v)
        return tuple(sorted(v)) if info.field_name == "seeds" else v

    @model_validator(mode="after")
    def _options_of_listed_datasets(self) -> "SweepSpec":
        raise_problems([(f"dataset_options.{name}", f"{name} is not in `datasets` ({', '.join(self.datasets)}); "
                                                    "list it there or remove its options")
                        for name in self.dataset_options if name not in self.datasets])
        return self

    @field_validator("optimizers", mode="wrap")
    @classmethod
    def _optimizers(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> dict[str, OptimizerSpace]:
        # wrap: which keys apply to which optimizer is checked on the raw mapping, so it is reported together
        # with the problems inside each optimizer's ranges
        problems: list[Problem] = []
        if isinstance(v, (list, tuple)):
            example = ", ".join(f"{o}: {{}}" for o in v)
            raise_problems([("", f"must map each optimizer to its parameters, e.g. {{{example}}}")])
        if isinstance(v, dict):
            for name, keys in v.items():
                if name not in catalog.OPTIMIZERS:
                    problems.append((str(name), f"unknown optimizer; {did_you_mean(name, catalog.OPTIMIZERS)}"
                                                f"use one of {', '.join(catalog.OPTIMIZERS)}"))
                    continue
                keys = {k for k, x in keys.items() if x is not None} if isinstance(keys, dict) else set()
                problems += [(f"{name}.{key}", problem) for key in sorted(keys & set(catalog.OPTIMIZER_PARAMS))
                             if (problem := catalog.misplaced_param(name, key))]
                if name == "sharpreg":
                    preset = catalog.OPTIMIZERS[name].preset
                    problems += [(f"sharpreg.{k}", f"required for sharpreg (the paper uses {k}: {preset[k]})")
                                 for k in ("lam", "xi") if k not in keys]
        try:
            v = handler(v)
        except ValidationError as exc:
            raise_problems(problems + error_problems(exc, [*OptimizerSpace.model_fields, *Param.model_fields]))
        space = v.get("sharpreg")
        if not problems and space is not None:
            (lam_low, _), (_, xi_high) = space.lam.extent(), space.xi.extent()
            if 1 + lam_low - xi_high <= 0:  # the weight (1 + λ − ξ) of L(w) must stay positive
                problems.append(("sharpreg", f"1 + lam - xi must stay positive, but lam can be {lam_low} "
                                             f"with xi {xi_high}; raise lam or lower xi"))
        raise_problems(problems)
        return {name: v[name] for name in catalog.OPTIMIZERS if name in v}  # canonical order: reordering YAML keys is no change

    @field_validator("defenses", mode="wrap")
    @classmethod
    def _defenses(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> dict[str, DefenseSpace]:
        if not isinstance(v, dict):
            raise_problems([("", "must map each defense to its parameters, e.g. {dp: {noise_multiplier: 1.0}}")])
        problems: list[Problem] = [p for name, keys in v.items() for p in defense_spaces.raw_problems(name, keys)]
        try:
            v = handler(v)
        except ValidationError as exc:
            raise_problems(problems + error_problems(exc, [*DefenseSpace.model_fields, *Param.model_fields]))
        if not problems:
            problems += [p for name, space in v.items() for p in defense_spaces.space_problems(name, space)]
        raise_problems(problems)
        return {name: v[name] for name in defense_spaces.DEFENSE_NAMES if name in v}  # canonical order

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: dict[str, str]) -> dict[str, str]:
        problems = [] if len(v) >= 2 else [("", f"needs at least 2 objectives for a Pareto front, got {len(v)}; "
                                               "e.g. {test_acc: max, attack_acc: min}")]
        for metric, direction in v.items():
            if metric not in OBJECTIVE_METRICS:
                problems.append((metric, f"unknown metric; {did_you_mean(metric, OBJECTIVE_METRICS)}"
                                         f"use one of {', '.join(OBJECTIVE_METRICS)}"))
            if direction.lower() not in _DIRECTIONS:
                problems.append((metric, f"direction must be max or min, got {direction!r}"))
        raise_problems(problems)
        return {metric: _DIRECTIONS[direction.lower()] for metric, direction in v.items()}

    @model_validator(mode="after")
    def _budget(self) -> "SweepSpec":
        problems = [] if self.methods else [("optimizers", "must name at least one optimizer (or a defense under "
                                                           "`defenses`), e.g. {sgd: {}, sam: {rho: 0.05}}")]
        if self.sampler.name == "grid":
            problems += [(path, "sampler grid needs finite values: give {choices: [...]} or a step")
                         for path, p, integer in self._searched() if p.values(integer) is None]
            size = self.grid_size()
            if not problems and size is not None and self.trials is not None and self.trials > size:
                problems.append(("trials", f"the grid has {size} combinations; set trials <= {size} "
                                           "or leave it out to run the whole grid"))
        elif self.trials is None:
            problems.append(("trials", f"required for sampler {self.sampler.name}; e.g. trials: 16"))
        if self.repeats > 1 and len(self.seeds) != self.repeats:
            problems.append(("seeds", f"with repeats: {self.repeats} every configuration runs on each seed, so list "
                                      f"exactly {self.repeats} seeds (got {len(self.seeds)}), or leave seeds out "
                                      f"for {', '.join(map(str, range(self.repeats)))}"))
        problems += self._objectives_reported() + self._population_problems()
        if self.train.model is not None and self.train.model not in MODEL_NAMES:
            problems.append(("train.model", f"unknown model; {did_you_mean(self.train.model, MODEL_NAMES)}"
                                            f"use one of {', '.join(MODEL_NAMES)}, or leave it out"))
        raise_problems(problems)
        return self

    def attack_names(self) -> tuple[str, ...]:
        """The attacks every trial runs: `attacks`, or every attack the trials can (see TrialConfig)."""
        return resolve_attacks(self.attacks, self.population)

    def _population_problems(self) -> list[Problem]:
        return population_problems(self.attacks, self.population)

    def _objectives_reported(self) -> list[Problem]:
        """An objective must be something every trial reports: label_only_acc needs the label-only attack,
        single_query_acc a single-query one, lira_auc the lira attack, test_acc_std a population."""
        attacks = set(self.attack_names())
        out = []
        for metric in self.objectives:
            need = catalog.metric_needs(metric)
            if need == ("defense", "dp") and (self.optimizers or set(self.defenses) - {"dp"}):
                out.append((f"objectives.{metric}", "is reported only by DP trials, and this sweep has others ("
                                                    f"{', '.join(m for m in self.methods if m != 'dp')}); "
                                                    "keep only defenses.dp or choose another objective"))
            elif need == ("population",) and self.population is None:
                out.append((f"objectives.{metric}", "is reported only by trials with a population; add "
                                                    "`population` or choose another objective"))
            elif need[:1] == ("attack",) and need[1] not in attacks:
                out.append((f"objectives.{metric}", f"needs the {need[1]} attack, which this sweep does not run "
                                                    f"(it needs a `population` that can serve it, and {need[1]} "
                                                    "in `attacks` if you list them)"))
            elif need[:1] == ("kind",) and not any(catalog.ATTACKS[a].kind == need[1] for a in attacks):
                what = "label_only" if need[1] == "label_only" else "a single-query attack"
                out.append((f"objectives.{metric}", f"no attack in `attacks` reports it; add {what} to `attacks` "
                                                    "or choose another objective"))
        return out

    def _searched(self) -> list[tuple[str, Param, bool]]:
        """(path, Param, integer?) of every Param that varies, optimizers' and training's."""
        groups: list[tuple[str, _ParamGroup]] = [(f"optimizers.{o}", s) for o, s in self.optimizers.items()]
        groups += [("train", self.train)]
        groups += [(f"defenses.{d}", s) for d, s in self.defenses.items()]
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
        """The budget: how many distinct configurations to measure (each on `repeats` seeds)."""
        if self.trials is not None:
            return self.trials
        size = self.grid_size()
        assert size is not None  # validation: only a finite grid may leave `trials` out
        return size

    @property
    def searched_seeds(self) -> tuple[int, ...]:
        """The seed choices of the search space: all seeds, or only the first when each configuration runs on
        every seed (repeats > 1)."""
        return self.seeds if self.repeats == 1 else self.seeds[:1]

    def grid_size(self) -> int | None:
        """How many distinct configurations the spec allows (a seed of `seeds` is part of a configuration
        unless repeats > 1); None if any searched range is continuous."""
        def size(group: _ParamGroup) -> int | None:
            sizes = [p.values(field_kind(n) == "int") for n, p in group.params().items()]
            return math.prod(len(s) for s in sizes if s is not None) if None not in sizes else None
        per_optimizer = [size(s) for s in (*self.optimizers.values(), *self.defenses.values())]
        common = size(self.train)
        if common is None or None in per_optimizer:
            return None
        return len(self.datasets) * len(self.searched_seeds) * common * sum(n for n in per_optimizer if n is not None)

    def fixed_trial_fields(self) -> dict[str, Any]:
        """TrialConfig fields that are the same in every trial of the sweep."""
        fields: dict[str, Any] = {"data_root": self.data_root, "download": self.download, "attacks": self.attacks,
                                  "population": self.population}
        fields |= {k: v for k in ("model", "hidden", "split_seed", "augment", "amp")
                   if (v := getattr(self.train, k)) is not None}
        groups = [self.train] + ([self.method_space(self.methods[0])] if len(self.methods) == 1 else [])
        fields |= {k: p.fixed for g in groups for k, p in g.params().items() if p.is_fixed}
        for key, options in (("dataset", self.datasets), ("seed", self.seeds)):
            if len(options) == 1:
                fields[key] = options[0]
        if len(self.methods) == 1:
            fields |= self.method_fields(self.methods[0])
        return fields

    @property
    def methods(self) -> tuple[str, ...]:
        """What the front compares: the optimizers, then the defenses (their names are distinct)."""
        return (*self.optimizers, *self.defenses)

    def method_space(self, method: str) -> OptimizerSpace | DefenseSpace:
        return self.optimizers[method] if method in self.optimizers else self.defenses[method]

    def method_fields(self, method: str) -> dict[str, Any]:
        """The TrialConfig fields that choosing `method` fixes (optimizer; a defense's defense and options)."""
        if method in self.optimizers:
            return {"optimizer": method}
        return defense_spaces.method_fields(method, self.defenses[method])

    def canonical_json(self) -> str:
        """Every setting, defaults included, keys sorted: equal specs give equal text whatever the YAML looked like."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """sha256 of canonical_json(): tag runs with it so resume can tell an edited spec."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def with_workdir(self, workdir: str | Path) -> "SweepSpec":
        """The same sweep with its state in `workdir` (what --workdir does)."""
        return self.model_copy(update={"storage": self.storage.model_copy(
            update={"workdir": str(Path(workdir).expanduser())})})

    def resolved_storage(self, base: str | Path | None = None) -> ResolvedStorage:
        """Fill in storage defaults: ./runs/<name> (relative to `base`, default the working directory) and
        SQLite files in it."""
        base = Path(base or Path.cwd())
        workdir = (base / (self.storage.workdir or f"runs/{self.name}")).resolve()
        tune_storage = self.storage.tune_storage
        if tune_storage and "://" not in tune_storage:  # a local path: absolute, as Ray needs
            tune_storage = str((base / tune_storage).resolve())
        return ResolvedStorage(
            workdir=workdir, tune_storage=tune_storage or str(workdir / "tune"),
            mlflow_uri=self.storage.mlflow_uri or f"sqlite:///{workdir / 'mlflow.db'}",
            optuna_url=self.storage.optuna_url or f"sqlite:///{workdir / 'optuna.db'}")

