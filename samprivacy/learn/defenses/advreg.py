"""AdvReg (Nasr, Shokri and Houmansadr 2018): adversarial regularisation against membership inference.

The min-max game of their Equation (7): an inference model h(f(x), y) learns to tell the classifier's members
from a reference set of non-members, maximising its gain

    G(h) = E_members[log h(f(x), y)] + E_reference[log(1 - h(f(x'), y'))]

in `adv_steps` inner steps before every classifier step (Adam, lr 1e-3). The classifier then minimises its loss
plus `adv_alpha` times h's mean membership probability on its own batch, with h held fixed: the member term of
G, as in the authors' code (Nasr et al.'s and SELENA's `train_privatly`: loss + alpha * (mean h - 0.5)). The
reference term is left out of the classifier's objective on purpose: its gradient would fit f to the reference
set's labels, i.e. train on data the trial promises not to train on. At alpha = 0 the classifier's gradient
is its loss's alone: training is plain training.

The reference set is the part of the validation split that `learn.defenses.reference_split` sets aside (never
trained on, never an attack set; model selection uses the other part). h follows Nasr et al.'s shape, narrower:
the probability vector and the one-hot label through their own layers, then a joint head (their widths
1024-512-64 / 512-64 / 256-128-64 become 256-64 / 64 / 64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INFERENCE_LR = 1e-3  # Adam, as Nasr et al.'s code


class InferenceModel(nn.Module):
    """h(f(x), y): the logit of 'member' from the classifier's probabilities and the label."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.probs = nn.Sequential(nn.Linear(num_classes, 4 * width), nn.ReLU(), nn.Linear(4 * width, width), nn.ReLU())
        self.label = nn.Sequential(nn.Linear(num_classes, width), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.num_classes).float()
        return self.head(torch.cat([self.probs(torch.softmax(logits.float(), 1)), self.label(onehot)], 1)).squeeze(1)


def gain(h: InferenceModel, member_logits: torch.Tensor, member_y: torch.Tensor, reference_logits: torch.Tensor,
         reference_y: torch.Tensor) -> torch.Tensor:
    """G(h): mean log h on members plus mean log(1 - h) on the reference (log-sigmoid of h's logit)."""
    return F.logsigmoid(h(member_logits, member_y)).mean() + F.logsigmoid(-h(reference_logits, reference_y)).mean()


class AdvReg:
    """The training loop's hook: `before_step` trains h, `penalty` is what the classifier adds to its loss."""

    def __init__(self, num_classes: int, x_reference: torch.Tensor, y_reference: torch.Tensor, *, alpha: float,
                 steps: int, seed: int) -> None:
        self.alpha, self.steps = alpha, steps
        self.x_ref, self.y_ref = x_reference, y_reference
        # h's initial weights and reference batches come from streams of their own: the classifier's training
        # (initialisation, batch order) draws exactly what it would without AdvReg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7919)
            self.h = InferenceModel(num_classes).to(x_reference.device)
        self.optimizer = torch.optim.Adam(self.h.parameters(), lr=INFERENCE_LR)
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def state(self) -> dict:
        """h, its optimizer and the reference stream: what a resumed trial needs to go on as if never stopped."""
        return {"h": self.h.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state(self, state: dict) -> None:
        self.h.load_state_dict(state["h"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    def _reference_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(self.x_ref), (size,), generator=self.generator).to(self.x_ref.device)
        return self.x_ref[pick], self.y_ref[pick]

    def before_step(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """adv_steps steps of h on this member batch against fresh reference batches, f held fixed."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            member_logits = model(xb).float()
        for _ in range(self.steps):
            xr, yr = self._reference_batch(len(xb))
            with torch.no_grad():
                reference_logits = model(xr).float()
            self.optimizer.zero_grad(set_to_none=True)
            (-gain(self.h, member_logits, yb, reference_logits, yr)).backward()
            self.optimizer.step()
        model.train(was_training)

    def penalty(self, model: nn.Module, logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """alpha * mean h(f(x), y) on the member batch, h fixed: the classifier lowers what h sees in it."""
        self.h.requires_grad_(False)
        try:
            return self.alpha * torch.sigmoid(self.h(logits.float(), yb)).mean()
        finally:
            self.h.requires_grad_(True)
