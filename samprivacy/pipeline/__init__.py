"""One trial, start to finish, without Ray: the unit of work the sweep service schedules and `samprivacy trial`
runs directly.

    setup.py       load the data (cheap checks first), build the model
    single.py      a single-model trial: train the target on the split's members, attack it
    members.py     train one member of a population and record its per-example statistics
    population.py  a trial with a population: K models, every attack with each model as the target
    references.py  shared reference models, trained once per recipe and reused across trials
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from samprivacy.pipeline.population import PopulationTrialResult, run_population_trial
from samprivacy.pipeline.references import ReferenceStore
from samprivacy.pipeline.setup import load_data, prepare
from samprivacy.pipeline.single import TrialResult, plot_roc, run_single_trial
from samprivacy.spec import TrialConfig


def run_trial(config: TrialConfig, *, on_epoch: Callable | None = None, resume: dict | None = None,
              references: str | Path | ReferenceStore | None = None) -> TrialResult | PopulationTrialResult:
    """Train and attack: one model, or the population `config.population` asks for. Both results offer
    summary() (the JSON document) and save(directory) (the artifacts). references: the folder of shared
    reference models (population.shared_references)."""
    if config.population is None:
        return run_single_trial(config, on_epoch=on_epoch, resume=resume)
    store = references if isinstance(references, ReferenceStore) or references is None else ReferenceStore(references)
    return run_population_trial(config, on_epoch=on_epoch, resume=resume, references=store)


__all__ = ["PopulationTrialResult", "ReferenceStore", "TrialResult", "load_data", "plot_roc", "prepare",
           "run_population_trial", "run_single_trial", "run_trial"]
