"""kill -9 at random moments: training in a subprocess and a signals export.

A trader's overnight run may die at any instant (power, OOM killer, a closed laptop). Afterwards the
history opens, the run is `interrupted`, its checkpoints load, and resuming it reaches exactly the
numbers of a run that never died. An export killed mid-write leaves no file or the previous one.
(tests/test_price_training.py kills once at a fixed step; here the moment is random, per seed.)
"""

from __future__ import annotations

import csv
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
from engine.events import Finished
from engine.forecast import load_price_model
from engine.store import RunStore
from engine.training.price import train_price

ROOT = Path(__file__).resolve().parents[2]
TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)
DATA = DataConfig(start="2015-01-01")  # spx from 2015: ~1000 bars, a few hundred windows
STEPS = 12
TRAIN = TrainConfig(epochs=1, max_steps=STEPS, batch_size=16, eval_every=3, lr=1e-3, warmup_steps=2,
                    precision="fp32", device="cpu", num_threads=1)
RESUME = TrainConfig(device="cpu", num_threads=1)  # everything else comes from the run's record

TRAIN_CHILD = textwrap.dedent("""
    import sys, time
    from engine.store import RunStore
    from engine.events import StepEvent
    from engine.training.price import train_price
    from tests.reliability.test_reliability_crash import DATA, TINY, TRAIN
    for event in train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN,
                             store=RunStore(sys.argv[1])):
        if isinstance(event, StepEvent):
            print(event.step, flush=True)
            time.sleep(0.03)  # a step a little longer, so the kill lands anywhere inside one
""")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Finished, dict[str, torch.Tensor]]:
    """The run that never died."""
    store = RunStore(tmp_path_factory.mktemp("ref") / "runs.db")
    done = list(train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store))[-1]
    assert done.status == "finished" and done.step == STEPS
    return done, load_checkpoint(done.last_checkpoint)["model"]


def _kill_training(db: Path, rng: random.Random) -> None:
    """Start training in a child and SIGKILL it inside a random step (checkpoint writes included)."""
    kill_after = rng.randint(1, STEPS - 3)
    child = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(db)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if int(line) >= kill_after:
                time.sleep(rng.uniform(0, 0.04))
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path, reference, seed):
    full, full_state = reference
    db = tmp_path / "runs.db"
    _kill_training(db, random.Random(seed))

    store = RunStore(db)  # "the next start of the app"
    [record] = store.list_runs()
    assert record["status"] == "interrupted"
    assert store.list_runs(status="interrupted") == [record]
    for row in store.checkpoints(record["run_id"]):  # whatever was recorded is whole
        assert load_checkpoint(row["path"])["step"] >= 1

    events = list(train_price([], model_cfg=PriceModelConfig(), data_cfg=DataConfig(),
                              train_cfg=RESUME, store=store, resume=record["run_id"]))
    done = events[-1]
    assert done.status == "finished" and done.step == STEPS and done.run_id == record["run_id"]
    assert done.metrics == full.metrics
    state = load_checkpoint(done.last_checkpoint)["model"]
    assert all(torch.equal(state[k], full_state[k]) for k in full_state)
    assert [s for s, _ in store.metric_series(done.run_id, "train/loss")] == list(range(1, STEPS + 1))
    assert store.get_run(done.run_id)["status"] == "finished"
    best = load_price_model(done.run_id, store=store)  # by run id: the recorded sha256 must match
    assert best.path == Path(done.best_checkpoint)
    assert load_checkpoint(done.last_checkpoint)["step"] == STEPS


EXPORT_CHILD = textwrap.dedent("""
    import sys
    import numpy as np, pandas as pd
    from engine.backtest.signals import export_signals
    days = pd.bdate_range("1990-01-01", periods=8000)
    frame = pd.DataFrame({"close": 3000.0, "position": np.arange(len(days)) % 11, "exposure": 0.5,
                          "regime": "bull"}, index=days)
    for h in range(1, 8):
        frame[f"pred_{h}"] = np.linspace(1, 2, len(days)) * h
    print("ready", flush=True)
    for i in range(10**6):  # rewrite the same file until killed, alternating its content
        export_signals(frame, sys.argv[1], instrument="SSE", run_id=f"run-{i % 2}",
                       checkpoint_sha="ab")
        print("wrote", flush=True)
""")


@pytest.mark.parametrize("whole_writes", [0, 1, 2])  # 0: killed in the first export: no file yet
def test_sigkill_during_a_signals_export_leaves_no_file_or_a_whole_one(tmp_path, whole_writes):
    rng, path = random.Random(whole_writes), tmp_path / "signals.csv"
    child = subprocess.Popen([sys.executable, "-c", EXPORT_CHILD, str(path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        for _ in range(whole_writes):
            assert child.stdout.readline().strip() == "wrote"
        time.sleep(rng.uniform(0, 0.15))  # inside the next write (each takes about 0.1-0.3 s)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    if not path.exists():
        assert whole_writes == 0
        return
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 8001 and rows[0][0] == "date" and rows[-1][0] == "2020-08-28"
    assert {len(r) for r in rows} == {len(rows[0])}
    assert {r[-2] for r in rows[1:]} in ({"run-0"}, {"run-1"})  # one export, not a mix

