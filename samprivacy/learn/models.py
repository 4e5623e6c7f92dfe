"""Target models: the paper's FC classifier (Purchase/Texas), WRN-16-8 (CIFAR), small nets for fast tests."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from samprivacy import catalog
from samprivacy.catalog import PAPER_FC_HIDDEN
from samprivacy.errors import ConfigError


def fc(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] | None = None) -> nn.Module:
    """Fully connected classifier with Tanh activations: hidden sizes [1024, 512, 256] by default."""
    sizes = (math.prod(input_shape), *(hidden or PAPER_FC_HIDDEN))
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] | None = None) -> nn.Module:
    """A small ReLU MLP for tests and quick CPU runs (one hidden layer of 64 units by default)."""
    sizes = (math.prod(input_shape), *(hidden or (64,)))
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)


def cnn(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] | None = None) -> nn.Module:
    """A tiny conv net with BatchNorm for image tests (channels 16, 32 by default)."""
    c1, c2 = hidden or (16, 32)
    return nn.Sequential(
        nn.Conv2d(input_shape[0], c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(c2, num_classes),
    )


class _WideBlock(nn.Module):
    """Pre-activation residual block of Zagoruyko & Komodakis (2016)."""

    def __init__(self, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(n_in), nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(n_out), nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.shortcut = None if n_in == n_out and stride == 1 else nn.Conv2d(n_in, n_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(torch.relu(self.bn2(o)))
        return o + shortcut


class WideResNet(nn.Module):
    """WRN-depth-width; WRN-16-8 is the paper's CIFAR model (depth = 6n + 4, n blocks per stage)."""

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"WideResNet `depth` must be 6n + 4 (10, 16, 22, 28, ...), got {depth}")
        n, widths = (depth - 4) // 6, (16, 16 * width, 32 * width, 64 * width)
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for stage, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(widths[stage] if i == 0 else widths[stage + 1], widths[stage + 1],
                                         stride if i == 0 else 1))
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.fc = nn.BatchNorm2d(widths[3]), nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(o, 1), 1))


def wrn16_8(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] | None = None) -> nn.Module:
    return WideResNet(16, 8, num_classes, in_channels=input_shape[0])


# The registry is catalog.MODELS (name -> "module:builder"); the builders above live in this module.
MODELS: dict[str, Callable[..., nn.Module]] = {name: globals()[entry.builder.split(":")[1]]
                                               for name, entry in catalog.MODELS.items()}
# The model each dataset gets unless the user names one: the paper's, shrunk where the data is tiny.
DEFAULT_MODELS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    name: entry.default_model for name, entry in catalog.DATASETS.items()}


def build_model(name: str | None, input_shape: tuple[int, ...], num_classes: int, *,
                hidden: tuple[int, ...] | None = None, dataset: str | None = None) -> nn.Module:
    """Build `name` (or the dataset's default model when name is None)."""
    if name is None:
        name, default_hidden = DEFAULT_MODELS.get(dataset or "", ("fc", None))
        hidden = hidden or default_hidden
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    if name in ("fc", "mlp") and hidden is not None and (not hidden or min(hidden) < 1):
        raise ConfigError(f"`hidden` sizes must be positive integers, got {hidden}")
    if catalog.MODELS[name].input == "image" and len(input_shape) != 3:
        raise ConfigError(f"model {name!r} needs image input (C, H, W), got {tuple(input_shape)}; use fc or mlp")
    if name == "cnn" and hidden is not None and (len(hidden) != 2 or min(hidden) < 1):
        raise ConfigError(f"model 'cnn' takes `hidden` as 2 positive channel counts (conv1, conv2), "
                          f"got {tuple(hidden)}; e.g. hidden = [16, 32]")
    return MODELS[name](tuple(input_shape), num_classes, hidden)
