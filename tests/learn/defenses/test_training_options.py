"""Label smoothing is F.cross_entropy(label_smoothing=...); selection 'last' keeps the last epoch's weights."""

import torch
import torch.nn.functional as F

from samprivacy.learn.train import train

from .conftest import config, mlp


def test_label_smoothing_is_cross_entropy_with_label_smoothing(blobs):
    x, y = blobs.subset("known_members")
    smoothing = 0.2
    reference = mlp(blobs)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    result = train(mlp(blobs), blobs, config(epochs=1, batch_size=len(blobs.splits.train), schedule="constant",
                                             label_smoothing=smoothing, selection="last"))
    # one full-batch step by hand (the loop's batch order does not matter for a full batch)
    xs, ys = blobs.x[torch.as_tensor(blobs.splits.train)], blobs.y[torch.as_tensor(blobs.splits.train)]
    optimizer.zero_grad()
    F.cross_entropy(reference(xs), ys, label_smoothing=smoothing).backward()
    optimizer.step()
    for a, b in zip(result.model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and it is not plain cross-entropy
    plain = train(mlp(blobs), blobs, config(epochs=1, batch_size=len(blobs.splits.train), schedule="constant",
                                            selection="last"))
    assert not torch.allclose(next(plain.model.parameters()), next(result.model.parameters()))


def test_last_epoch_selection_returns_the_last_epochs_weights(blobs):
    seen = {}

    def on_epoch(row, checkpoint):
        seen[row["epoch"]] = checkpoint()["model"]

    result = train(mlp(blobs), blobs, config(epochs=5, selection="last"), on_epoch=on_epoch)
    assert result.best_epoch == 5
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, seen[5][name], rtol=0, atol=0)
    best = train(mlp(blobs), blobs, config(epochs=5), on_epoch=on_epoch)
    for name, value in best.model.state_dict().items():  # best_val: the selected epoch's weights instead
        torch.testing.assert_close(value, seen[best.best_epoch][name], rtol=0, atol=0)
