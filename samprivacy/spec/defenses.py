"""A sweep's `defenses:` section: which defenses go on the front beside the optimizers, each with the optimizer
it runs with and its own conditional parameters (as rho is conditional on SAM).

    defenses:
      dp: {max_grad_norm: 1.0, noise_multiplier: {choices: [0.6, 1.2]}}      # DP-SGD
      advreg: {adv_alpha: {choices: [1, 3]}, adv_steps: 1}
      selena: {selena_k: 5, selena_l: 2, optimizer: sharpreg, rho: 0.01, lam: 1.5, xi: 0.3}
      memguard: {memguard_budget: 0.5}
      label_smoothing: {label_smoothing: {choices: [0.1, 0.3]}}
      last_epoch: {optimizer: sharpreg, lam: 1.5, xi: 0.3}                  # the paper's Figure 4(c)

A name is a method of the front: catalog.DEFENSES (TrialConfig.defense) or catalog.TRAINING_DEFENSES (a training
option that makes a method of its own: label smoothing, the last epoch's weights).
"""

from __future__ import annotations

from typing import Any

from samprivacy import catalog
from samprivacy.spec.errors import Problem, did_you_mean
from samprivacy.spec.params import DefenseSpace

DEFENSE_NAMES = (*catalog.DEFENSES, *catalog.TRAINING_DEFENSES)


def raw_problems(name: str, raw: Any) -> list[Problem]:
    """Problems visible on the raw mapping of one defense: an unknown name, a parameter that is not its own."""
    if name not in DEFENSE_NAMES:
        return [(str(name), f"unknown defense; {did_you_mean(name, DEFENSE_NAMES)}use one of "
                            f"{', '.join(DEFENSE_NAMES)}")]
    keys = {k for k, x in raw.items() if x is not None} if isinstance(raw, dict) else set()
    out: list[Problem] = []
    own = catalog.DEFENSES[name].params if name in catalog.DEFENSES else ()
    for key in sorted(keys & set(catalog.DEFENSE_PARAMS) - set(own)):
        out.append((f"{name}.{key}", f"{name} takes no {key}; move it under defense {catalog.defense_of(key)}"))
    for key, value in catalog.TRAINING_DEFENSES.get(name, {}).items():
        if value is None and key not in keys:
            out.append((f"{name}.{key}", f"required: the {name} method is its {key} (e.g. {key}: 0.1)"))
        elif value is not None and key in keys:
            out.append((f"{name}.{key}", f"{name} sets {key}: {value} itself; remove it"))
    return out


def space_problems(name: str, space: DefenseSpace) -> list[Problem]:
    """Problems of a parsed defense space: its optimizer, the optimizer's parameters, SELENA's L < K, DP's noise."""
    out = []
    if space.optimizer not in catalog.OPTIMIZERS:
        return [(f"{name}.optimizer", f"unknown optimizer {space.optimizer!r}; "
                                      f"{did_you_mean(space.optimizer, catalog.OPTIMIZERS)}use one of "
                                      f"{', '.join(catalog.OPTIMIZERS)}")]
    given = space.params()
    out += [(f"{name}.{key}", problem) for key in given if key in catalog.OPTIMIZER_PARAMS
            and (problem := catalog.misplaced_param(space.optimizer, key))]
    if space.optimizer == "sharpreg":
        preset = catalog.OPTIMIZERS["sharpreg"].preset
        out += [(f"{name}.{k}", f"required for sharpreg (the paper uses {k}: {preset[k]})")
                for k in ("lam", "xi") if k not in given]
    if name in catalog.DEFENSES:
        # the most demanding corner of each range: L's largest against K's smallest, ...
        corner = {k: (p.extent()[1] if k == "selena_l" else p.extent()[0]) for k, p in given.items()
                  if k in catalog.DEFENSE_PARAMS}
        out += [(f"{name}.{field}", message) for field, message in
                catalog.defense_problems(name, space.optimizer, corner)]
    return out


def method_fields(name: str, space: DefenseSpace) -> dict[str, Any]:
    """The TrialConfig fields a defense method fixes: its optimizer, `defense`, and what a training defense sets."""
    fields: dict[str, Any] = {"optimizer": space.optimizer}
    if name in catalog.DEFENSES:
        fields["defense"] = name
    fields |= {k: v for k, v in catalog.TRAINING_DEFENSES.get(name, {}).items() if v is not None}
    return fields


def cost_notes(spec: Any) -> list[str]:
    """What each defense of a SweepSpec costs per trial, in trainings (a population multiplies it by its K)."""
    models = spec.population.models if spec.population is not None else 1
    per = f", for each of the population's {models} models" if models > 1 else ""
    notes = []
    for name, space in spec.defenses.items():
        if name == "selena":
            k = int(space.selena_k.extent()[1] if space.selena_k else catalog.DEFENSE_DEFAULTS["selena_k"])
            notes.append(f"selena: K + 1 = {k + 1} trainings{per}: {models * (k + 1)} per trial")
        elif name in catalog.DEFENSES:
            notes.append(f"{name}: {catalog.DEFENSES[name].cost}{per}")
    return notes
