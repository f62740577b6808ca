"""latest_forecasts (the daily use over a universe): the last window of every instrument in batches gives, row for
row, what forecasting each instrument alone from its last bar gives, across OHLCV and close-only instruments."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.config import DataConfig
from engine.data import build_windows, load_bars
from engine.data.universe import expand_sources
from engine.forecast import LoadedPriceModel, forecast_quantiles, latest_forecasts
from engine.models import build_price_model


def loaded_tiny() -> LoadedPriceModel:
    torch.manual_seed(5)
    model = build_price_model("tiny", d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                              qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64).eval()
    return LoadedPriceModel(model, model.cfg, DataConfig(), None, "0" * 64, Path("none.pt"), {}, torch.device("cpu"))


def test_latest_forecasts_match_one_instrument_at_a_time():
    loaded = loaded_tiny()
    members = expand_sources(["us12"])[0][:4]
    tables = [load_bars("spx"), *(load_bars(m) for m in members)]
    tables[2] = replace(tables[2], frame=tables[2].frame.iloc[:-40])  # ends earlier than the others
    sets = [build_windows(t, loaded.model_cfg.window, loaded.model_cfg.horizon) for t in tables]
    assert len({tuple(ws.mask) for ws in sets}) == 2  # OHLCV and close-only side by side
    batched = latest_forecasts(loaded, sets, batch=2)
    assert batched.prices.shape == (len(sets), loaded.model_cfg.horizon)
    for k, ws in enumerate(sets):
        alone = forecast_quantiles(loaded, ws, np.array([len(ws.dates) - 1]))
        for name in ("close", "sigma", "prices", "returns", "quantile_prices", "quantile_returns"):
            np.testing.assert_allclose(getattr(batched, name)[k], getattr(alone, name)[0], rtol=1e-5, atol=1e-9,
                                       err_msg=f"{name} of {ws.instrument}")

