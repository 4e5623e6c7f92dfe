"""Configuration parsed once at the edge into frozen typed objects.

    trial.py   TrialConfig: one trial (the `samprivacy trial` command, the sweep's trainable, reports)
    params.py  Param and the optimizer / training groups of a sweep's search space
    sweep.py   SweepSpec: a sweep written as data (sweeps/*.yaml; reference docs/spec.md)
    load.py    load_spec / parse_spec: YAML -> SweepSpec
    errors.py  SpecError: every problem with its field path, the bad value and the fix
"""

from samprivacy.spec.errors import SpecError
from samprivacy.spec.load import load_spec, parse_spec
from samprivacy.spec.params import (ATTACK_NAMES, DATASET_NAMES, MODEL_NAMES, OBJECTIVE_METRICS, SAMPLER_NAMES,
                                    DefenseSpace, OptimizerSpace, Param, TrainSpace, field_kind)
from samprivacy.spec.sweep import ResolvedStorage, Resources, SamplerSpec, StorageSpec, SweepSpec
from samprivacy.spec.trial import (SINGLE_QUERY_ATTACKS, LiraOptions, Population,
                                   RmiaOptions, TrialConfig, parse_trial_config)

__all__ = ["ATTACK_NAMES", "DATASET_NAMES", "MODEL_NAMES", "OBJECTIVE_METRICS", "SAMPLER_NAMES",
           "SINGLE_QUERY_ATTACKS", "DefenseSpace", "LiraOptions", "OptimizerSpace", "Population", "RmiaOptions", "Param", "ResolvedStorage", "Resources", "SamplerSpec",
           "SpecError", "StorageSpec", "SweepSpec", "TrainSpace", "TrialConfig", "field_kind", "load_spec",
           "parse_spec", "parse_trial_config"]
