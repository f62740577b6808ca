"""Engine test helpers: the tiny price network the tests train (as a config and as CLI flags), a price run
trained to its end, and a CLI call run to its JSON answer. No Qt here: engine tests import it, and so may
GUI tests."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

from engine import cli
from engine.config import DataConfig, PriceModelConfig, TrainConfig
from engine.events import run_to_end
from engine.store import RunStore
from engine.training.price import train_price

# One layer, 32 wide: a training step takes milliseconds on one CPU thread, so a test trains for real.
TINY_SHAPE = {"d_model": 32, "n_layers": 1, "n_heads": 2, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
              "qk_rope_head_dim": 8, "v_head_dim": 8, "ffn_hidden": 64}
TINY_PRICE = PriceModelConfig(**TINY_SHAPE)
TINY_PRICE_ARGS = [arg for name, value in TINY_SHAPE.items() for arg in ("--set", f"{name}={value}")]


def finished_price_run(store: RunStore, data: list[str], *, data_cfg: DataConfig, train_cfg: TrainConfig,
                       model_cfg: PriceModelConfig = TINY_PRICE) -> str:
    """Train a price run to its end in store and return its id; a run that did not finish fails the test
    with its error, so the tests built on it never start from a half-trained model."""
    done = run_to_end(train_price(data, model_cfg=model_cfg, data_cfg=data_cfg, train_cfg=train_cfg, store=store))
    assert done.status == "finished", done.error
    return done.run_id


def cli_json(db: Path, *argv: str) -> dict:
    """Run `quant-engine --json --db db argv...` as a script would; a non-zero exit fails with the output."""
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--json", "--db", str(db), *argv])
    assert code == 0, (argv, buf.getvalue())
    return json.loads(buf.getvalue())
