"""Adam on a few tensors, without ``torch.optim``.

The first ``torch.optim`` optimizer of a process imports ``torch._dynamo`` (1-2 s on a CPU machine), a
toll that every ``morph3d fit --photometric`` run paid on its first face; each step also goes through
the optimizer's hooks and dispatch. This is the same update as ``torch.optim.Adam``'s single-tensor
path (no weight decay, no amsgrad), operation for operation, so results are identical.
"""
from __future__ import annotations

import torch


class Adam:
    """Adam over ``groups``: (tensor, learning rate) pairs, each tensor a leaf that receives ``.grad``."""

    def __init__(self, groups: list, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.groups = [(p, float(lr)) for p, lr in groups]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in self.groups]
        self.steps = [0] * len(self.groups)  # per tensor: those without a gradient skip a step

    def zero_grad(self) -> None:
        for p, _ in self.groups:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every tensor with a gradient."""
        for i, ((p, lr), (avg, avg_sq)) in enumerate(zip(self.groups, self.moments)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            correction1 = 1 - self.beta1 ** self.steps[i]
            correction2_sqrt = (1 - self.beta2 ** self.steps[i]) ** 0.5
            avg.lerp_(p.grad, 1 - self.beta1)
            avg_sq.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
            denom = (avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
            p.addcdiv_(avg, denom, value=-lr / correction1)
