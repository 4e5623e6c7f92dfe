"""MemGuard (Jia et al. 2019): a post-hoc defense on the confidence vector, the model's weights untouched.

    defended = MemGuard.fit(model, x_members, y_members, x_reference, y_reference, budget=0.5, seed=0)
    defended(x)   # log of the defended confidence vector: softmax(defended(x)) = s + r

The defender trains its own surrogate attack g (an MLP on the confidence vector sorted in descending order,
members = the model's training set, non-members = the reference part of the validation split), then for each
query looks for noise r that drives g(s + r) towards 0.5 (Phase I: gradient steps on a logit offset e,
s + r = softmax(z + e), minimising |g - 0.5| plus a hinge that keeps the predicted label on top plus the L1
distortion). Guarantees, per query: the predicted label never changes (a candidate that changes it is dropped:
r = 0) and ||r||_1 <= budget (Phase II: the paper adds r with probability budget / ||r||_1, so the budget holds
in expectation; here r is scaled by min(1, budget / ||r||_1) instead, which keeps the budget on every query
and the answer deterministic; s and s + r share their top label, so every point between them does too).

Every attack sees the defended outputs only, LiRA and RMIA included; label-only attacks see the same labels by
design, so MemGuard cannot change them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SURROGATE_EPOCHS = 200  # full-batch Adam steps of the defender's attack model
PHASE1_STEPS = 40
PHASE1_LR = 0.5
LABEL_MARGIN = 1e-3  # the predicted logit stays this far above the others during the search


class Surrogate(nn.Module):
    """g: the defender's membership classifier on the sorted confidence vector (logit of 'member')."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_classes, width), nn.ReLU(), nn.Linear(width, width // 2), nn.ReLU(),
                                 nn.Linear(width // 2, 1))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return self.net(probs.sort(dim=1, descending=True).values).squeeze(1)


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.softmax(model(x[i:i + batch_size]).float(), 1) for i in range(0, len(x), batch_size)])


def fit_surrogate(model: nn.Module, x_members: torch.Tensor, x_reference: torch.Tensor, seed: int) -> Surrogate:
    """g on a balanced set: as many members (a random subset) as reference non-members."""
    generator = torch.Generator().manual_seed(seed)
    n = min(len(x_members), len(x_reference))
    members = x_members[torch.randperm(len(x_members), generator=generator)[:n].to(x_members.device)]
    probs = torch.cat([_probs(model, members), _probs(model, x_reference[:n])])
    label = torch.cat([torch.ones(n), torch.zeros(n)]).to(probs.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 31)
        g = Surrogate(probs.shape[1]).to(probs.device)
    optimizer = torch.optim.Adam(g.parameters(), lr=1e-3)
    with torch.enable_grad():
        for _ in range(SURROGATE_EPOCHS):
            optimizer.zero_grad(set_to_none=True)
            F.binary_cross_entropy_with_logits(g(probs), label).backward()
            optimizer.step()
    return g.requires_grad_(False).eval()


def defend(logits: torch.Tensor, g: Surrogate, budget: float) -> torch.Tensor:
    """(n, C) defended confidence vectors s + r for raw `logits`: label kept, ||r||_1 <= budget per row."""
    z = logits.detach().float()
    s = torch.softmax(z, 1)
    label = z.argmax(1)
    if budget == 0 or len(z) == 0:
        return s
    e = torch.zeros_like(z, requires_grad=True)
    optimizer = torch.optim.Adam([e], lr=PHASE1_LR)
    with torch.enable_grad():
        for _ in range(PHASE1_STEPS):
            optimizer.zero_grad(set_to_none=True)
            moved = z + e
            p = torch.softmax(moved, 1)
            top = moved.gather(1, label[:, None]).squeeze(1)
            others = moved.scatter(1, label[:, None], float("-inf")).max(1).values
            objective = ((torch.sigmoid(g(p)) - 0.5).abs() + 10.0 * F.relu(others - top + LABEL_MARGIN)
                         + 0.1 * (p - s).abs().sum(1))
            objective.sum().backward()
            optimizer.step()
    with torch.no_grad():
        candidate = torch.softmax(z + e, 1)
        keeps_label = candidate.argmax(1) == label
        r = torch.where(keeps_label[:, None], candidate - s, torch.zeros_like(s))
        distortion = r.abs().sum(1, keepdim=True)
        r = r * torch.clamp(budget / distortion.clamp_min(1e-12), max=1.0)
        return s + r


class MemGuard(nn.Module):
    """The model behind MemGuard: forward returns log(s + r), so softmax of the output is the defended vector."""

    def __init__(self, model: nn.Module, surrogate: Surrogate, budget: float) -> None:
        super().__init__()
        self.model, self.surrogate, self.budget = model, surrogate, budget

    @classmethod
    def fit(cls, model: nn.Module, x_members: torch.Tensor, x_reference: torch.Tensor, *, budget: float,
            seed: int) -> "MemGuard":
        return cls(model, fit_surrogate(model, x_members, x_reference, seed), budget).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            defended = defend(self.model(x), self.surrogate, self.budget)
        return torch.log(defended.clamp_min(1e-30))
