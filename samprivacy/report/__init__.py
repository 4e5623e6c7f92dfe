"""Reading results, without Ray or Optuna: a sweep's runs as typed records (records.py, read from MLflow by
runs.py), the Pareto front and hypervolume (pareto.py), plots (plots.py), Table 1 and 2 (tables.py), the text the
MLflow UI shows (page.py), and every report file at once (bundle.py).
"""
