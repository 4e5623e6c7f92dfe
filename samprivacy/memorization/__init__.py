"""`samprivacy memorization`: memorization and influence compared across optimizers, beside the sweep service
(it uses Ray for its tasks and MLflow for its record, but proposes nothing and tunes nothing).

    job.py   each optimizer's population of the spec as Ray tasks (resumable), then report.memorization's
             report logged to MLflow
"""

from samprivacy.memorization.job import MemorizationOutcome, optimizer_configs, run_memorization

__all__ = ["MemorizationOutcome", "optimizer_configs", "run_memorization"]
