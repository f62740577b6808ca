"""Seed ensembles of the price network: the members' forecasts averaged in forecast space.

Members are trained on the same data and recipe with different seeds, so one network unit is the
same h-day log return for all of them and the average is taken in network units. Quantiles are
averaged level by level (a mean of non-decreasing vectors is non-decreasing: no crossing); a
Student-t member contributes its quantiles at QUANTILES, so the ensemble has a quantile output.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from engine.config import QUANTILES
from engine.models.price import PriceNetwork, PriceOutput, output_quantiles


class PriceEnsemble(nn.Module):
    """Averaged forecasts of seed members; `features` is the members' features side by side (a
    strategy trained on the ensemble reads every member's representation)."""

    def __init__(self, members: list[PriceNetwork]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> PriceOutput:
        outs = [member(x, mask) for member in self.members]
        prices = torch.stack([o.prices for o in outs]).mean(dim=0)
        quantiles = None
        levels = np.stack([output_quantiles(o, QUANTILES) for o in outs])  # [M, B, H, Q] float64
        if np.isfinite(levels).all():  # a point head has no quantiles (NaN)
            quantiles = torch.from_numpy(levels.mean(axis=0)).to(prices)
        return PriceOutput(prices=prices, features=torch.cat([o.features for o in outs], dim=-1),
                           aux_loss=torch.stack([o.aux_loss for o in outs]).mean(), quantiles=quantiles)


__all__ = ["PriceEnsemble"]
