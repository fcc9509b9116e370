"""Adam (Kingma & Ba 2015) for training's few parameters, written out instead of ``torch.optim``.

The first ``torch.optim`` optimizer of a process imports ``torch._dynamo``, which took 1.3 s on a quiet
2-core CPU (2.3 s on a busy one), paid by every sort in a fresh process: a fifth of a tetrode sort.
This is the same update as ``torch.optim.Adam``'s defaults (no weight decay, no amsgrad), per parameter
``p`` with gradient ``g_t`` at step ``t``:

    m_t = b1 m_{t-1} + (1 - b1) g_t
    v_t = b2 v_{t-1} + (1 - b2) g_t^2
    p_t = p_{t-1} - lr / (1 - b1^t) * m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)

tested against ``torch.optim.Adam`` step by step. The moments live on the parameter's device, so a
step on a GPU needs no host round trip.
"""
from __future__ import annotations

import math

import torch


class Adam:
    """``Adam(groups, lr)``: ``groups`` is a list of parameters, or of dicts ``{"params": [...], "lr": x}``."""

    def __init__(self, groups, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        groups = list(groups)
        if groups and not isinstance(groups[0], dict):
            groups = [dict(params=groups)]
        self.param_groups = [dict(params=list(g["params"]), lr=float(g.get("lr", lr))) for g in groups]
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.state: list[list[dict | None]] = [[None] * len(g["params"]) for g in self.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for group, states in zip(self.param_groups, self.state):
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                st = states[i]
                if st is None:
                    st = states[i] = dict(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["step"] += 1
                g = p.grad
                st["m"].lerp_(g, 1 - b1)                      # m = b1 m + (1 - b1) g
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)  # v = b2 v + (1 - b2) g^2
                step_size = group["lr"] / (1 - b1 ** st["step"])
                denom = (st["v"].sqrt() / math.sqrt(1 - b2 ** st["step"])).add_(self.eps)
                p.addcdiv_(st["m"], denom, value=-step_size)

    def state_dict(self) -> dict:
        """Learning rates, betas, eps and the moments (for training checkpoints)."""
        return dict(lr=[g["lr"] for g in self.param_groups], betas=self.betas, eps=self.eps,
                    state=[[None if s is None else dict(s) for s in states] for states in self.state])

    def load_state_dict(self, blob: dict) -> None:
        if len(blob["state"]) != len(self.param_groups) or any(
                len(s) != len(g["params"]) for s, g in zip(blob["state"], self.param_groups)):
            raise ValueError("optimizer state does not match the parameters (another model's checkpoint?)")
        for group, lr in zip(self.param_groups, blob["lr"]):
            group["lr"] = float(lr)
        self.betas, self.eps = tuple(blob["betas"]), float(blob["eps"])
        self.state = [[None if s is None else dict(step=int(s["step"]), m=s["m"].to(p.device, p.dtype),
                                                   v=s["v"].to(p.device, p.dtype))
                       for s, p in zip(states, group["params"])]
                      for states, group in zip(blob["state"], self.param_groups)]
