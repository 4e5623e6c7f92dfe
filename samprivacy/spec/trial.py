"""`TrialConfig`: everything that determines one trial, what `samprivacy trial`, the sweep's trainable and the
reports pass around. `Population`: the optional model population a trial's strong attacks need."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import ValidationInfo

from samprivacy import catalog
from samprivacy.errors import ConfigError
from samprivacy.spec.errors import did_you_mean, problems, raise_problems

SINGLE_QUERY_ATTACKS = tuple(n for n, e in catalog.ATTACKS.items() if e.family == "threshold")
# LiRA's paper: below 64 shadow models a variance shared by all examples beats per-example estimates.
PER_EXAMPLE_VARIANCE_FROM = 64
# Shadows per example in each group (IN, OUT) once the target is left out: the least a variance needs.
SHADOWS_PER_GROUP = 2


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LiraOptions(_Frozen):
    variance: Literal["auto", "global", "per_example"] = Field("auto", description=(
        f"auto: one variance for all examples below {PER_EXAMPLE_VARIANCE_FROM} shadow models, per example from "
        "there (Carlini et al.); global or per_example force one"))


class RmiaOptions(_Frozen):
    reference_models: int = Field(2, ge=1, le=64, description="OUT reference models per example (1 to 4 is the "
                                                              "affordable regime RMIA was designed for)")
    a: float | Literal["auto"] = Field("auto", description=(
        "offline RMIA's a in [0, 1]: Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2, the linear stand-in for the "
        "missing IN models; auto: tuned per target on its reference models only"))
    gamma: float = Field(1.0, gt=0.0, description="x beats a population sample z when LR(x, z) >= gamma")
    temperature: float = Field(1.0, gt=0.0, description="softmax temperature of Pr(x | theta)")

    @field_validator("a")
    @classmethod
    def _unit(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and not 0.0 <= v <= 1.0:
            raise ValueError(f"must lie in [0, 1] or be auto, got {v}")
        return v


class Population(_Frozen):
    """K models of one trial configuration, each trained on a random `fraction` of the member pool."""

    FLAG_VALUE: ClassVar[str] = "models"  # `samprivacy trial --population K` (spec.flags)
    models: int = Field(8, ge=1, le=4096, description="models of the trial's configuration (K)")
    fraction: float = Field(0.5, gt=0.0, lt=1.0, description="share of the pool each model trains on")
    pool: Literal["all", "members"] = Field("all", description=(
        "all: every example outside the held-out test and validation sets (the LiRA protocol, as many negatives "
        "as the data allows); members: the split's training members (the paper's Table 1 protocol)"))
    shared_references: int = Field(0, ge=0, le=256, description=(
        "0: offline attacks use the population's other models; n > 0: RMIA and offline LiRA use n reference "
        "models trained once per (dataset, model, training budget) with plain SGD and shared by every trial"))
    queries: int | None = Field(None, ge=1, le=18, description=(
        "queries per example for LiRA's statistics: None = 2 for images (as is and flipped), 1 otherwise"))
    lira: LiraOptions = LiraOptions()
    rmia: RmiaOptions = RmiaOptions()

    def problems(self, attacks: tuple[str, ...]) -> list[tuple[str, str]]:
        """(field, message) for each attack in `attacks` this population cannot run."""
        out = []
        n_in, n_out = membership_counts(self.models, self.fraction)
        if self.shared_references:
            ref_in, ref_out = membership_counts(self.shared_references, self.fraction)
            if min(ref_in, ref_out) < 1:
                out.append(("shared_references", f"{self.shared_references} reference models at fraction "
                                                  f"{self.fraction} leave an example with no OUT reference; use 2 or more"))
            elif "rmia" in attacks and self.rmia.reference_models > ref_out:
                out.append(("rmia.reference_models", f"an example may be OUT for only {ref_out} of the "
                                                     f"{self.shared_references} shared references, fewer than "
                                                     f"{self.rmia.reference_models}; lower it or add references"))
        needs_shadows = [a for a in attacks if a == "lira" or (a in ("rmia", "lira_offline")
                                                                 and not self.shared_references)]
        if needs_shadows and (n_in < SHADOWS_PER_GROUP + 1 or n_out < SHADOWS_PER_GROUP + 1):
            out.append(("models", f"{', '.join(needs_shadows)} need{'s' * (len(needs_shadows) == 1)} every example "
                                  f"IN and OUT of at least "
                                  f"{SHADOWS_PER_GROUP + 1} models (each model in turn is the target, the others its "
                                  f"shadows: a variance needs {SHADOWS_PER_GROUP} of each), but {self.models} models at "
                                  f"fraction {self.fraction} give {n_in} IN and {n_out} OUT; use models >= "
                                  f"{minimum_models(self.fraction)}"))
        elif "rmia" in attacks and not self.shared_references and self.rmia.reference_models > n_out - 1:
            out.append(("rmia.reference_models", f"a target's OUT examples have {n_out - 1} other OUT models, fewer "
                                                 f"than {self.rmia.reference_models}; lower it or raise models"))
        return out


def membership_counts(models: int, fraction: float) -> tuple[int, int]:
    """The fewest models an example is IN for, and the fewest it is OUT of (learn.population.balanced_membership:
    fraction * models, floor or ceiling)."""
    return math.floor(fraction * models), models - math.ceil(fraction * models)


def minimum_models(fraction: float) -> int:
    return next(k for k in range(2, 4096) if min(membership_counts(k, fraction)) >= SHADOWS_PER_GROUP + 1)


def _preset(param: str, key: str | None = None, unit: str = "") -> str:
    """Which optimizers take `param`, and what None means: the catalog preset's value (written only there)."""
    defaults = ", ".join(f"{o}: {catalog.OPTIMIZERS[o].preset[key or param]}{' ' * bool(unit)}{unit}"
                         for o in catalog.takers(param))
    return f"{', '.join(catalog.takers(param))} only; None = the preset's ({defaults})"


def _default(param: str) -> str:
    return f"None = {catalog.DEFENSE_DEFAULTS[param]}"


class TrialConfig(_Frozen):
    """Everything that determines one trial: data, model, optimizer, budget, seed, attacks, population."""

    dataset: str = Field("digits", description=" | ".join(catalog.DATASETS))
    data_root: str | None = Field(None, description="folder with the dataset's canonical files (purchase100, "
                                                    "texas100, cifar)")
    download: bool = Field(False, description="let torchvision download CIFAR into data_root")
    dataset_options: dict[str, bool | int | float | str] | None = Field(None, description=(
        "the source's own options, e.g. longtail's {n: 6000, binary: true} (`load_dataset` checks the names)"))
    model: str | None = Field(None, description=f"{' | '.join(catalog.MODELS)}; None picks the dataset's default")
    hidden: tuple[int, ...] | None = Field(None, description="hidden layer sizes of fc/mlp, e.g. 1024,512,256")
    optimizer: str = Field("sgd", description=" | ".join(catalog.OPTIMIZERS))
    base_optimizer: Literal["sgd", "adam"] = Field("sgd", description="the step under the sharpness-aware "
                                                                      "update: sgd (with momentum) or adam")
    rho: float | None = Field(None, ge=0.0, description=f"neighbourhood radius ρ; {_preset('rho')}")
    lam: float | None = Field(None, description=f"sharpness weight λ > 0; {_preset('lam')}")
    xi: float | None = Field(None, description=f"anti-overfitting weight ξ >= 0; {_preset('xi')}")
    swa_start: float | None = Field(None, gt=0.0, lt=1.0, description=(
        f"fraction of epochs before averaging starts; {_preset('swa_start')}"))
    swa_lr: float | None = Field(None, gt=0.0, description=(
        f"constant learning rate while averaging; {_preset('swa_lr', 'swa_lr_scale', 'times lr')}"))
    lr: float = Field(0.05, gt=0.0, description="learning rate of the base optimizer")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="momentum of sgd (adam ignores it)")
    weight_decay: float = Field(5e-4, ge=0.0, description="L2 weight decay")
    schedule: Literal["cosine", "step", "constant"] = Field("cosine", description=(
        "learning-rate schedule, stepped once per epoch (step: x0.1 at 1/2 and 3/4 of the epochs)"))
    epochs: int = Field(30, ge=1, description="passes over the training data")
    batch_size: int = Field(64, ge=1, description="examples per step")
    seed: int = Field(0, ge=0, description="seed of the weights and of the batch order")
    split_seed: int | None = Field(None, ge=0, description="seed of the member/non-member split; None = seed")
    augment: bool | None = Field(None, description="random crops (4-pixel padding) and flips; images only; "
                                                   "None = on for image datasets")
    amp: bool | None = Field(None, description="bf16 autocast; None = on for CUDA")
    attacks: tuple[str, ...] | None = Field(None, description="attack names (`samprivacy catalog` lists them); "
                                                              "None runs every attack the trial can")
    population: Population | None = Field(None, description=(
        "train K models on random halves of the member pool and run LiRA / RMIA with each in turn as the target"))
    device: str | None = Field(None, description="'cpu', 'cuda', ...; None picks CUDA when available")
    # Defenses (learn/defenses, docs/defenses.md): at most one per trial, its parameters conditional on it.
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "label smoothing of the cross-entropy (Szegedy et al.), any optimizer or defense; 0 = off"))
    selection: Literal["best_val", "last"] = Field("best_val", description=(
        "which epoch's weights a trial keeps: best_val (early stopping on the validation split) or last"))
    defense: str | None = Field(None, description=" | ".join(catalog.DEFENSES) + "; None = no defense")
    max_grad_norm: float | None = Field(None, gt=0.0, description=(
        f"dp: per-sample clipping norm C; {_default('max_grad_norm')}"))
    noise_multiplier: float | None = Field(None, ge=0.0, description=(
        f"dp: noise std / C; None = from target_epsilon if given, else {catalog.DEFENSE_DEFAULTS['noise_multiplier']}"))
    target_epsilon: float | None = Field(None, gt=0.0, description=(
        "dp: the epsilon to spend in `epochs` (Opacus picks the noise); instead of noise_multiplier"))
    target_delta: float | None = Field(None, gt=0.0, lt=1.0, description="dp: delta; None = 1 / training-set size")
    adv_alpha: float | None = Field(None, ge=0.0, description=(
        f"advreg: weight α of the inference model's membership probability in the loss; {_default('adv_alpha')}"))
    adv_steps: int | None = Field(None, ge=1, description=(
        f"advreg: inference-model steps per classifier step; {_default('adv_steps')}"))
    selena_k: int | None = Field(None, ge=2, le=256, description=f"selena: K sub-models; {_default('selena_k')}")
    selena_l: int | None = Field(None, ge=1, description=(
        f"selena: L, the sub-models each example is left out of (< K); {_default('selena_l')}"))
    memguard_budget: float | None = Field(None, ge=0.0, le=2.0, description=(
        f"memguard: L1 distortion budget of the confidence vector per query; {_default('memguard_budget')}"))

    @field_validator("rho", "lr", "momentum", "weight_decay", "lam", "xi", "swa_start", "swa_lr", "label_smoothing",
                     *catalog.DEFENSE_PARAMS)
    @classmethod
    def _finite(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"`{info.field_name}` must be a finite number, got {v}")
        return v

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        if v not in catalog.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {v!r}; use one of {', '.join(catalog.OPTIMIZERS)}")
        return v

    @field_validator("defense")
    @classmethod
    def _known_defense(cls, v: str | None) -> str | None:
        if v is not None and v not in catalog.DEFENSES:
            raise ValueError(f"unknown defense {v!r}; {did_you_mean(v, catalog.DEFENSES)}use one of "
                             f"{', '.join(catalog.DEFENSES)}, or leave it out")
        return v

    @field_validator("attacks")
    @classmethod
    def _known_attacks(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        unknown = [a for a in v if a not in catalog.ATTACKS]
        if not v or unknown:
            what = f"unknown attack {unknown[0]!r}; {did_you_mean(unknown[0], catalog.ATTACKS)}" if unknown else (
                "is empty; ")
            raise ValueError(f"{what}use some of {', '.join(catalog.ATTACKS)}")
        return tuple(dict.fromkeys(v))

    @model_validator(mode="after")
    def _own_params_only(self) -> "TrialConfig":
        for name in catalog.OPTIMIZER_PARAMS:
            if getattr(self, name) is not None and (problem := catalog.misplaced_param(self.optimizer, name)):
                raise ValueError(problem)
        raise_problems(catalog.defense_problems(self.defense, self.optimizer,
                                                {p: getattr(self, p) for p in catalog.DEFENSE_PARAMS}))
        raise_problems(population_problems(self.attacks, self.population))
        return self

    @property
    def method(self) -> str:
        """The name a front, a table row and a legend give this configuration's method (catalog.method_name)."""
        return catalog.method_name(self.optimizer, self.defense, self.label_smoothing, self.selection)

    def attack_names(self) -> tuple[str, ...]:
        """The attacks this trial runs: `attacks`, or every attack it can (population ones with a population)."""
        return resolve_attacks(self.attacks, self.population)


def resolve_attacks(attacks: tuple[str, ...] | None, population: Population | None) -> tuple[str, ...]:
    """`attacks` as given, or (None) every attack that needs no population plus, with a population, every
    population attack it can run."""
    if attacks is not None:
        return attacks
    if population is None:
        return catalog.DEFAULT_ATTACKS
    return (*catalog.DEFAULT_ATTACKS, *(a for a in catalog.POPULATION_ATTACKS if not population.problems((a,))))


def population_problems(attacks: tuple[str, ...] | None, population: Population | None) -> list[tuple[str, str]]:
    """(field, message) for attacks that need a population it lacks or cannot serve; with `attacks` None, a
    population that can run no population attack at all."""
    needs = [a for a in attacks or () if catalog.ATTACKS[a].needs_population]
    if needs and population is None:
        return [("attacks", f"{', '.join(needs)} need{'s' * (len(needs) == 1)} a population of models; add "
                            f"`population` (e.g. population: {{models: 8}}) or drop {'it' if len(needs) == 1 else 'them'}")]
    if population is None:
        return []
    if attacks is not None:
        return [(f"population.{f}", m) for f, m in population.problems(attacks)]
    if not set(resolve_attacks(None, population)) & set(catalog.POPULATION_ATTACKS):
        why = "; ".join(m for _, m in population.problems(catalog.POPULATION_ATTACKS))
        return [("population", f"runs none of {', '.join(catalog.POPULATION_ATTACKS)}: {why}")]
    return []


def parse_trial_config(fields: dict) -> TrialConfig:
    """Build a TrialConfig from user input, turning pydantic's errors into one clear ConfigError."""
    try:
        return TrialConfig(**fields)
    except ValidationError as exc:
        lines = [f"  {path or '<top level>'}: {message}" for path, message in problems(exc, TrialConfig.model_fields)]
        raise ConfigError("\n".join(["invalid trial configuration:", *lines])) from None
