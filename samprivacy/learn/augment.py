"""Image views on the device: random crops and flips for training, and the fixed, ordered set of shifted and
flipped views that query-based audits use (LiRA's augmented queries, the label-only attack).

Images are (N, C, H, W) tensors; every function keeps the device and dtype of its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4  # training crops: 4-pixel zero padding, then a random crop back to H x W (the CIFAR standard)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """Each image shifted by its own random (dx, dy) in [-pad, pad] (zero fill) and flipped with probability 1/2.

    Offsets come from `generator` (a CPU generator: the same draws on any device); one gather, no Python loop.
    """
    n, c, h, w = x.shape
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h)).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)).to(x.device)  # (n, w)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)  # a flipped crop reads columns backwards
    index_n = torch.arange(n, device=x.device)[:, None, None, None]
    index_c = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[index_n, index_c, rows[:, None, :, None], cols[:, None, None, :]]


def view_list(max_shift: int) -> list[tuple[bool, int, int]]:
    """All (flip, dx, dy) with |dx| + |dy| <= max_shift: identity first, then its flip, then by shift size
    (Choquette-Choo et al. 2021, Sec. 4). view_list(0) = [identity, flip]; view_list(1) has 10, (2) 26."""
    shifts = [(dx, dy) for dx in range(-max_shift, max_shift + 1) for dy in range(-max_shift, max_shift + 1)
              if abs(dx) + abs(dy) <= max_shift]
    shifts.sort(key=lambda s: (abs(s[0]) + abs(s[1]), s))
    return [(flip, dx, dy) for dx, dy in shifts for flip in (False, True)]


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate (N, C, H, W) images by dx columns and dy rows, filling with zeros (pad + crop, no wrap-around)."""
    h, w = x.shape[-2:]
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def views(x: torch.Tensor, count: int, max_shift: int = 2) -> torch.Tensor:
    """The first `count` of view_list(max_shift) applied to x: (count, N, C, H, W)."""
    chosen = view_list(max_shift)[:count]
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} views exist with max_shift={max_shift}, asked for {count}")
    return torch.stack([shift(x.flip(-1) if flip else x, dx, dy) for flip, dx, dy in chosen])
