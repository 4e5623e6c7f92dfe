"""SELENA: no training example is ever answered by a sub-model that trained on it."""

import numpy as np
import pytest
import torch
from torch import nn

from samprivacy.learn.defenses.selena import split_ai, split_assignment
from samprivacy.learn.train import train

from .conftest import config, mlp


class Constant(nn.Module):
    """A sub-model that answers one-hot on its own index, whatever the query: who answered is readable."""

    def __init__(self, k: int, models: int):
        super().__init__()
        self.register_buffer("logits", torch.full((models,), -1e4).index_fill_(0, torch.tensor(k), 1e4))
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_each_example_is_left_out_of_exactly_l_submodels():
    trained = split_assignment(500, 7, 3, seed=0)
    assert (~trained).sum(1).tolist() == [3] * 500
    assert (trained.sum(0) > 0).all()  # every sub-model trains on something
    assert not np.array_equal(trained, split_assignment(500, 7, 3, seed=1))


def test_no_training_example_is_answered_by_a_submodel_that_trained_on_it():
    k, l, n = 6, 2, 300
    trained = split_assignment(n, k, l, seed=3)
    answers = split_ai([Constant(j, k) for j in range(k)], torch.zeros(n, 4), trained)
    # sub-model j's whole answer lands in column j: the mass there is exactly its share of the average
    assert torch.all(answers[torch.as_tensor(trained)] == 0)
    torch.testing.assert_close(answers[torch.as_tensor(~trained)], torch.full((n * l,), 1 / l))


def test_selena_distils_split_ai_and_costs_k_plus_one_trainings(blobs):
    result = train(mlp(blobs), blobs, config(defense="selena", selena_k=4, selena_l=2, epochs=4))
    assert result.defense_metrics["trainings"] == 5
    assert result.test_acc > 0.8  # the distilled model learnt the task from soft labels alone
    assert len(result.history) == 4  # the curves are the distillation's


def test_selena_checkpoint_resumes_the_distillation_without_the_submodels(blobs):
    saved = {}

    def on_epoch(row, checkpoint):
        if row["epoch"] == 2:
            saved.update(checkpoint())

    cfg = config(defense="selena", selena_k=3, selena_l=1, epochs=4, selection="last")
    full = train(mlp(blobs), blobs, cfg, on_epoch=on_epoch)
    assert saved["soft_labels"].shape == (len(blobs.splits.train), blobs.num_classes)
    resumed = train(mlp(blobs), blobs, cfg, resume=saved)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)


def test_l_not_below_k_is_refused_with_the_field():
    with pytest.raises(ValueError, match="selena_l.*must be < selena_k"):
        config(defense="selena", selena_k=3, selena_l=3)
