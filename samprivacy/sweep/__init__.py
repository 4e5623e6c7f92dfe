"""The sweep service: owns Ray Tune, Optuna and MLflow (learn/ and audit/ never import them).

space.py     the Optuna define-by-run space of a SweepSpec, directions, samplers, configuration ids
units.py     proposals (Optuna trials) and their units of work (one seed each): reuse, waiting, the budget
proposing.py the proposal book: Optuna proposals into units, outcomes told back (when: see its docstring)
search.py    SweepSearch: the Tune searcher, a thin adapter between Tune and the proposal book
study.py     the Optuna study as the record: what each proposal's user attributes hold, read back on resume
trial.py     the Tune trainable: run_trial, checkpoints, the trial's MLflow run, live metrics (metrics.py)
tracking.py  MLflow: the sweep's summary run, trial / config / duplicate runs, found again by tags
cluster.py   join or start Ray; refuse a trial no node can hold
progress.py  the progress line and progress.json, from memory
runner.py    run / resume: segments of Tune experiments, then reconcile and publish the Pareto front
results.py   a sweep on disk: sweep.json, proposals, status, Optuna's record of the front (Optuna, no Ray)
publish.py   what people read, written back to MLflow: pareto tags, plots, tables, the experiment's description
metrics.py   the sweep's Prometheus metrics (ray.util.metrics): trials running / finished, epochs, objectives

Analysis that needs neither Ray nor Optuna (fronts, plots, tables) lives in samprivacy.report; operations
around the service (submit to a cluster, the MLflow UI) in samprivacy.ops; the memorization job in
samprivacy.memorization; every reach past Ray's, Optuna's or MLflow's public API in samprivacy.compat.
"""
