"""The sweep service: owns Ray Tune, Optuna and MLflow (learn/ and audit/ never import them).

space.py     the Optuna define-by-run space of a SweepSpec, directions, samplers
search.py    SweepSearch: Ray Tune's OptunaSearch with a persistent study and its traps fixed
trial.py     the Tune trainable: run_trial, epoch checkpoints, MLflow child run
tracking.py  MLflow: parent run per sweep, child run per trial, found again by tags
runner.py    run / resume: Ray, Tune, then reconcile and publish the Pareto front
results.py   a sweep on disk: sweep.json, trial states, the Pareto report (no Ray)
pareto.py    non-dominated sets, hypervolume, Pareto tables and plots (pure numpy + matplotlib)
submit.py    Ray Job Submission; ui.py: the MLflow UI on a local store

Public names are re-exported lazily, so `import samprivacy.sweep.pareto` does not import Optuna (or Ray).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "space": ("SAMPLERS", "ConditionalGridSampler", "config_from_params", "directions", "grid_combos",
              "make_sampler", "param_names", "suggest_params", "suggest_trial_config"),
    "pareto": ("default_reference", "hypervolume_2d", "non_dominated", "pareto_table", "plot_front_html",
               "plot_front_png", "to_minimize"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["SAMPLERS", "ConditionalGridSampler", "config_from_params", "default_reference", "directions",
           "grid_combos", "hypervolume_2d", "make_sampler", "non_dominated", "pareto_table", "param_names",
           "plot_front_html", "plot_front_png", "suggest_params", "suggest_trial_config", "to_minimize"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'samprivacy.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(f"samprivacy.sweep.{_WHERE[name]}"), name)
