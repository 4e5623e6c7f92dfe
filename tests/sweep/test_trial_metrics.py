"""What a population trial's MLflow run gets: every population attack's figures, missing ones left out."""

from samprivacy.sweep.tracking import trial_metrics


def test_population_figures_are_logged_and_missing_ones_left_out():
    summary = {"test_acc": 0.9, "train_acc": 1.0, "val_acc": 0.9, "attack_acc": 0.6, "seconds": 3.0,
               "best_epoch": 4, "lira_tpr_at_fpr_0.001": 0.08, "lira_tpr_at_fpr_0.001_ci_low": 0.06,
               "lira_tpr_at_fpr_0.001_ci_high": 0.1, "lira_tpr_at_fpr_0.001_negatives": 19200,
               "lira_tpr_at_fpr_0.001_per_target": None, "lira_tpr_at_fpr_0.001_per_target_std": None,
               "rmia_a": 0.3, "attacks": {"loss": {"accuracy": 0.6, "tpr_at_fpr_0.001": None}},
               "attacks_std": {"loss": {"accuracy": 0.01, "tpr_at_fpr_0.001": None}}}
    metrics = trial_metrics(summary)
    assert metrics["lira_tpr_at_fpr_0.001"] == 0.08 and metrics["lira_tpr_at_fpr_0.001_negatives"] == 19200
    assert metrics["lira_tpr_at_fpr_0.001_ci_low"] == 0.06 and metrics["rmia_a"] == 0.3
    assert "lira_tpr_at_fpr_0.001_per_target" not in metrics and "attack_loss_tpr_at_fpr_0.001" not in metrics
    assert metrics["attack_loss_accuracy"] == 0.6 and metrics["attack_loss_accuracy_std"] == 0.01
