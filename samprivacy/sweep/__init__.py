"""The sweep service: owns Ray Tune, Optuna and MLflow (learn/ and audit/ never import them).

space.py     the Optuna define-by-run space of a SweepSpec, directions, samplers
search.py    SweepSearch: Ray Tune's OptunaSearch with a persistent study and its traps fixed
trial.py     the Tune trainable: run_trial, epoch checkpoints, the trial's MLflow run, live metrics (metrics.py)
tracking.py  MLflow: a summary run per sweep, a top-level run per trial, found again by tags
runner.py    run / resume: Ray, Tune, then reconcile and publish the Pareto front
results.py   a sweep on disk: sweep.json, trial states, Optuna's record of the front (Optuna, no Ray)
publish.py   what people read, written back to MLflow: pareto tags, plots, tables, the experiment's description
metrics.py   the sweep's Prometheus metrics (ray.util.metrics): trials running / finished, epochs, objectives

Analysis that needs neither Ray nor Optuna (fronts, plots, tables) lives in samprivacy.report; operations
around the service (submit to a cluster, the MLflow UI) in samprivacy.ops.
"""
