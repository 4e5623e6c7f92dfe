"""Every defense runs as a single-model trial and with a population (LiRA and RMIA against it)."""

import math

import numpy as np
import pytest

from samprivacy.learn.defenses.memguard import MemGuard
from samprivacy.pipeline import run_trial
from samprivacy.pipeline.setup import new_model
from samprivacy.spec import Population, TrialConfig

SMALL = dict(dataset="digits", hidden=(32,), epochs=2, batch_size=128, device="cpu")
DEFENSES = {
    "dp-sgd": dict(defense="dp", noise_multiplier=0.8, max_grad_norm=1.0),
    "advreg": dict(defense="advreg", adv_alpha=1.0),
    "selena": dict(defense="selena", selena_k=3, selena_l=1),
    "memguard": dict(defense="memguard", memguard_budget=0.3),
    "label_smoothing": dict(label_smoothing=0.2),
    "last_epoch": dict(selection="last"),
    "selena+sam": dict(defense="selena", selena_k=3, selena_l=1, optimizer="sam"),
}


@pytest.mark.parametrize("method", DEFENSES)
def test_a_population_reports_lira_and_rmia_for_every_defense(method):
    config = TrialConfig(**SMALL, **DEFENSES[method], attacks=("loss", "lira", "rmia"),
                         population=Population(models=6, rmia={"reference_models": 1}))
    s = run_trial(config).summary()
    assert s["method"] == method
    for metric in ("lira_auc", "lira_tpr_at_fpr_0.001", "rmia_auc"):
        assert math.isfinite(s[metric]), metric
    assert math.isfinite(s["attacks"]["loss"]["auc"])
    if method == "dp-sgd":  # every model spends the same epsilon: the trial reports it
        per_model = [m["epsilon"] for m in s["population"]["per_model"]]
        assert s["epsilon"] == pytest.approx(np.mean(per_model)) and 0 < s["epsilon"] < math.inf
    else:
        assert "epsilon" not in s


def test_a_single_dp_trial_reports_epsilon_and_its_method():
    s = run_trial(TrialConfig(**SMALL, **DEFENSES["dp-sgd"])).summary()
    assert s["method"] == "dp-sgd" and s["epsilon"] > 0 and s["delta"] == pytest.approx(1 / 800)


def test_memguard_attacks_see_only_defended_outputs():
    config = TrialConfig(**SMALL, **DEFENSES["memguard"], attacks=("confidence",))
    result = run_trial(config)
    assert isinstance(result.training.model, MemGuard)
    undefended = new_model(config, result.dataset, config.seed)  # same architecture, its weights from the guard
    undefended.load_state_dict(result.training.model.model.state_dict())
    x = result.dataset.x[:200]
    import torch
    with torch.no_grad():
        s, defended = torch.softmax(undefended(x), 1), torch.softmax(result.training.model(x), 1)
    assert not torch.allclose(s, defended)  # what the attack queried is not the raw model
    assert torch.equal(s.argmax(1), defended.argmax(1))
