"""Image views: per-example random crops and flips for training; the fixed ordered views for queries."""

import torch

from samprivacy.learn.augment import random_crop_flip, shift, view_list, views


def test_each_image_gets_its_own_crop_and_flip():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=1)
    assert out.shape == x.shape
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 5  # one shared shift per batch would give a single distinct image
    # every output is some shift of the image or of its mirror image, with zeros where it came from the padding
    candidates = [shift(img, dx, dy) for img in (x[:1], x[:1].flip(-1)) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    for o in out:
        assert any(torch.equal(o, c[0]) for c in candidates)


def test_crops_follow_the_generator():
    x = torch.randn(8, 3, 6, 6)
    a = random_crop_flip(x, torch.Generator().manual_seed(3))
    b = random_crop_flip(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_views_start_with_the_image_and_its_mirror():
    x = torch.randn(2, 1, 5, 5)
    v = views(x, 2)
    assert torch.equal(v[0], x) and torch.equal(v[1], x.flip(-1))
    assert len(view_list(0)) == 2 and len(view_list(1)) == 10 and len(view_list(2)) == 26
