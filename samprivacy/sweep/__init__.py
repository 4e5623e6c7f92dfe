"""The sweep service: owns Ray Tune, Optuna and MLflow (learn/ and audit/ never import them).

space.py     the Optuna define-by-run space of a SweepSpec, directions, samplers
search.py    SweepSearch: Ray Tune's OptunaSearch with a persistent study and its traps fixed
trial.py     the Tune trainable: run_trial, epoch checkpoints, MLflow child run
tracking.py  MLflow: parent run per sweep, child run per trial, found again by tags
runner.py    run / resume: Ray, Tune, then reconcile and publish the Pareto front
results.py   a sweep on disk: sweep.json, trial states, the Pareto report (Optuna, no Ray)

Analysis that needs neither Ray nor Optuna (fronts, plots, tables) lives in samprivacy.report; operations
around the service (submit to a cluster, the MLflow UI) in samprivacy.ops.
"""
