"""Reading results, without Ray or Optuna: Pareto fronts, hypervolume and plots (pareto.py).

Everything here takes plain arrays and rows, so it runs on a laptop against a finished sweep's records.
"""
