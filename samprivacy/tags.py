"""Every MLflow tag name samprivacy writes or searches by, in one place (plain strings: report/ reads them without
Ray or Optuna, sweep/ and the memorization job write them). Runs are found again by these tags, never by
position, so a resumed sweep never duplicates a run.

Run kinds (TAG_KIND): "sweep" (the summary run), "trial" (a trial run: one unit's training), "config" (a
configuration's mean over its seeds), "duplicate" (a proposal answered by earlier measurements), "memorization".
"""

TAG_SWEEP = "samprivacy.sweep"  # every run of a sweep: its name
TAG_KIND = "samprivacy.kind"  # what the run is: see the kinds above
TAG_TRIAL = "samprivacy.trial_id"  # a trial run: the Tune trial that trains it
TAG_CONFIG = "samprivacy.config_id"  # trial, config and duplicate runs: the configuration (space.config_id)
TAG_SEED = "samprivacy.seed"  # a trial run's seed (with the config id: the unit it measures)
TAG_PROPOSAL = "samprivacy.proposal"  # the Optuna trial number of a config or duplicate run
TAG_DUPLICATE_OF = "samprivacy.duplicate_of"  # on a duplicate: the run whose measurement it reuses
TAG_SWEEP_RUN = "samprivacy.sweep_run_id"  # on trial runs: their sweep's summary run
TAG_FAILURE = "samprivacy.failure"  # a failed run: why
TAG_LAST_ERROR = "samprivacy.last_error"  # a trial run: the error of its latest attempt (Tune may retry it)
TAG_BEST_ATTACK = "samprivacy.best_attack"  # a trial run: the attack behind attack_acc
TAG_WARNINGS = "samprivacy.warnings"  # a trial run: what its attacks had to fall back on (e.g. RMIA's default a)
TAG_GIT_REVISION = "samprivacy.git_revision"  # the summary run: the code that ran the sweep
TAG_SPEC_HASH = "samprivacy.spec_hash"  # the summary run (and a submitted Ray job): spec.spec_hash()
TAG_WORKDIR = "samprivacy.workdir"  # the summary run (and a submitted Ray job): where the sweep's state lives
TAG_STOP_REASON = "samprivacy.stop_reason"  # the summary run: why the sweep ended before its budget
TAG_PARETO = "pareto"  # trial and config runs: "true" on the front (the UI's saved views filter on it)
# MLflow's own
TAG_NOTE = "mlflow.note.content"  # a run's or an experiment's description (markdown) in the UI
TAG_PARENT_RUN = "mlflow.parentRunId"  # nests a bookkeeping run under the summary run
TAG_VIEW_PREFIX = "mlflow.sharedViewState."  # experiment tags: a saved view of the runs table each (report/page.py)
# Classic model development, as far as MLflow records it (its 3.17 UI still opens an experiment on the GenAI
# overview unless the address says ?workflowType=machine_learning: see report/page.py).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
