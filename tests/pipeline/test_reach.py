"""`validate` sizes the population's pool and warns when an objective's FPR is out of its reach."""

import pytest

from samprivacy.cli import main
from samprivacy.pipeline.reach import sweep_reach
from samprivacy.spec import load_spec

SPEC = """
name: reach
datasets: [longtail]
dataset_options:
  longtail: {{n: 3000, classes: 5, dim: 16, subpopulations: 10}}
optimizers: {{sgd: {{}}}}
train: {{epochs: 1}}
population: {{models: {models}}}
attacks: [loss, lira, rmia]
objectives: {{test_acc: max, {objective}: min}}
sampler: {{name: grid}}
"""


def spec_file(tmp_path, models=8, objective="lira_tpr_at_fpr_0.001"):
    path = tmp_path / "reach.yaml"
    path.write_text(SPEC.format(models=models, objective=objective))
    return path


def test_a_population_too_small_for_the_objectives_fpr_is_warned_with_what_would_suffice(tmp_path, capsys):
    infos, warnings = sweep_reach(load_spec(spec_file(tmp_path)))
    # longtail keeps 2/5 of the rows outside the test and validation sets: a pool of 1,200, 600 OUT per target
    assert infos == [{"dataset": "longtail", "pool": 1200, "pool_protocol": "all", "models": 8,
                      "negatives_per_target": 600, "negatives_pooled": 4800}]
    (warning,) = warnings
    assert "4,800 non-members" in warning and "fewer than 10 false positives" in warning
    assert "population.models >= 17" in warning and "pool of >= 2,500" in warning  # 10 / 0.001 = 10,000 negatives
    assert main(["validate", str(spec_file(tmp_path))]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "population pool of 1,200 examples" in printed and "population.models >= 17" in printed


def test_enough_models_and_the_warning_is_gone_but_per_target_figures_still_warn(tmp_path):
    assert sweep_reach(load_spec(spec_file(tmp_path, models=17)))[1] == []
    (warning,) = sweep_reach(load_spec(spec_file(tmp_path, models=17,
                                                 objective="lira_tpr_at_fpr_0.001_per_target")))[1]
    assert "600 non-members" in warning and "report it missing" in warning and "pool of >= 20,000" in warning


@pytest.mark.parametrize("objective", ["lira_tpr_at_fpr_0.01", "lira_auc"])
def test_reachable_objectives_are_not_warned(tmp_path, objective):
    assert sweep_reach(load_spec(spec_file(tmp_path, models=17, objective=objective)))[1] == []


def test_a_purchase_format_file_gives_a_pool_of_every_row_outside_test_and_validation(tmp_path):
    import numpy as np

    from samprivacy.learn.data import load_dataset
    from samprivacy.pipeline.setup import population_pool

    rng = np.random.default_rng(0)
    path = tmp_path / "purchase100.npz"
    np.savez(path, features=(rng.random((10_000, 600)) < 0.2).astype(np.uint8), labels=rng.integers(0, 100, 10_000))
    data = load_dataset("purchase100", root=path, seed=0)
    assert len(data.splits.train) == 1000  # SELENA's split keeps 10% of the rows as members (the paper's protocol)
    pool = population_pool(data)
    # the LiRA protocol: every row but the held-out test set (1,000) and the validation set (1,000)
    assert len(pool) == 8000 and not set(pool) & (set(data.splits.test) | set(data.splits.val))
    assert set(population_pool(data, "members")) == set(data.splits.train)
