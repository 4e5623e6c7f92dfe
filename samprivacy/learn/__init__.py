"""Training: datasets and splits, models, the sharpness-aware optimizer family, the training loop.

Pure torch/numpy: this package never imports ray, optuna or mlflow (it runs on GPU machines without them).
"""
