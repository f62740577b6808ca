"""The strategy network: a recurrent cell walks the decision days and picks a position 0..10 each day."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import N_POSITIONS, StrategyModelConfig

HEADS = ("gumbel", "straight_through", "concrete")


@dataclass
class StrategyOutput:
    positions: Tensor  # (B, S): expected position in [0, 10] (training) / integer argmax (deterministic)
    logits: Tensor  # (B, S, 11)


def relaxed_one_hot(logits: Tensor, head: str, tau: float, hard: bool) -> Tensor:
    """Differentiable choice over positions.

    gumbel: Gumbel-Softmax, one-hot forward with soft gradient when hard;
    straight_through: one-hot argmax forward, softmax gradient, no noise;
    concrete: the relaxed Gumbel sample itself, never one-hot.
    """
    if head == "straight_through":
        soft = (logits / tau).softmax(dim=-1)
        hard = True
    else:
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = ((logits + gumbel) / tau).softmax(dim=-1)
        hard = hard and head == "gumbel"
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


class StrategyNetwork(nn.Module):
    """Each day t: state_t = cell([features_t, position_{t-1}/10], state_{t-1});
    logits_t = head([features_t, state_t]). Feeding the position back lets the gradient of the last
    day's loss reach the first day's decision through the state."""

    def __init__(self, cfg: StrategyModelConfig) -> None:
        super().__init__()
        if cfg.head not in HEADS:
            raise ValueError(f"unknown head {cfg.head!r}; choose one of {list(HEADS)}")
        cells = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}
        if cfg.cell not in cells:
            raise ValueError(f"unknown cell {cfg.cell!r}; choose one of {sorted(cells)}")
        self.cfg = cfg
        self.cell = cells[cfg.cell](cfg.feature_dim + 1, cfg.state_dim)
        self.head = nn.Sequential(
            nn.Linear(cfg.feature_dim + cfg.state_dim, cfg.state_dim),
            nn.GELU(),
            nn.Linear(cfg.state_dim, N_POSITIONS),
        )
        self.register_buffer("levels", torch.arange(N_POSITIONS, dtype=torch.float32), persistent=False)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """One AdamW group, every parameter decayed: the small recurrent net was tuned so, and a
        checkpoint's optimizer state resumes only into the same groups."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    def forward(self, features: Tensor, tau: float = 1.0, deterministic: bool = False,
                held: Tensor | None = None, initial: Tensor | None = None) -> StrategyOutput:
        """held (B, S): positions fed back instead of the network's own choices, so a decision's logits
        are a smooth function of the features along a fixed walk (what explanations attribute).
        initial (B,): the position held the day before the walk (None: flat)."""
        b, s, _ = features.shape
        features = F.dropout(features, self.cfg.dropout, self.training and not deterministic)
        state = features.new_zeros(b, self.cfg.state_dim)
        memory = (state, state) if self.cfg.cell == "lstm" else None
        position = features.new_zeros(b) if initial is None else initial.to(features.dtype)
        positions, logits = [], []
        for t in range(s):
            step_in = torch.cat([features[:, t], position[:, None] / (N_POSITIONS - 1)], dim=-1)
            if memory is None:
                state = self.cell(step_in, state)
            else:
                memory = self.cell(step_in, memory)
                state = memory[0]
            day_logits = self.head(torch.cat([features[:, t], state], dim=-1))
            if held is not None:
                position = held[:, t].to(features.dtype)
            elif deterministic:
                position = day_logits.argmax(dim=-1).to(features.dtype)
            else:
                choice = relaxed_one_hot(day_logits, self.cfg.head, tau, self.cfg.hard)
                position = choice @ self.levels.to(choice.dtype)
            positions.append(position)
            logits.append(day_logits)
        return StrategyOutput(positions=torch.stack(positions, dim=1), logits=torch.stack(logits, dim=1))
