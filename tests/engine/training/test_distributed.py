"""torchrun / DDP: a 2-process gloo run of the price trainer is the 1-process run of the same global
batch, leaves identical weights on both ranks, records exactly one run, and resumes on one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
from engine.events import Finished
from engine.models import build_price_model
from engine.store import RunStore
from engine.training import distributed
from engine.training import price as price_job

ROOT = Path(__file__).resolve().parents[3]
# dropout 0: the 1-process and 2-process runs must see the same computation, not just the same data
TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64, dropout=0.0)
DATA = DataConfig(start="2016-01-01")
TRAIN = TrainConfig(epochs=1, max_steps=4, batch_size=16, eval_every=2, lr=1e-3, warmup_steps=1,
                    precision="fp32", device="cpu", num_threads=1)

# Runs under torchrun: a full run (weights of each rank saved), then a run cancelled after step 2.
SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from engine.training import price
    from engine.training.distributed import world
    from engine.events import CancelToken, StepEvent
    from tests.engine.training.test_distributed import DATA, TINY, TRAIN, recording_builder
    from engine.store import RunStore

    out, store = Path(sys.argv[1]), RunStore(sys.argv[2])
    models = []
    price.build_price_model = recording_builder(models)
    events = list(price.train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN,
                                    store=store))
    torch.save(models[-1].state_dict(), out / f"rank{world().rank}.pt")
    print("full", world().rank, events[-1].status, events[-1].run_id, flush=True)
    cancel = CancelToken()
    for event in price.train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN,
                                   store=store, cancel=cancel):
        if isinstance(event, StepEvent) and event.step == 2 and world().rank == 1:
            cancel.cancel()  # one rank only, as a Ctrl+C that reaches one process first
    print("cancel", world().rank, event.status, event.step, flush=True)
""")


def recording_builder(built: list):
    """A model factory for the job that remembers the models it builds (to read final weights)."""
    def build(*args, **kwargs):
        built.append(build_price_model(*args, **kwargs))
        return built[-1]
    return build


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    """One 2-process gloo launch (both scenarios, to pay the start-up once)."""
    out = tmp_path_factory.mktemp("ddp")
    db = out / "runs.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "QUANT_WORKSTATION_HOME": str(out)}
    (out / "job.py").write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(out / "job.py"), str(out), str(db)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, RunStore(db), proc.stdout


def single_process_run(monkeypatch, store: RunStore, **kw) -> tuple[list, dict]:
    models: list = []
    monkeypatch.setattr(price_job, "build_price_model", recording_builder(models))
    events = list(price_job.train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN,
                                        store=store, **kw))
    return events, models[-1].state_dict()


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_both_ranks_end_with_identical_weights(torchrun):
    out, _, stdout = torchrun
    rank0, rank1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert stdout.count("full") == 2 and "finished" in stdout


def test_two_processes_match_one_process_on_the_same_global_batch(torchrun, tmp_path, monkeypatch):
    out, ddp_store, _ = torchrun
    one_store = RunStore(tmp_path / "runs.db")
    events, weights = single_process_run(monkeypatch, one_store)
    assert events[-1].status == "finished"
    assert_close(torch.load(out / "rank0.pt", weights_only=True), weights)
    ddp_run = next(r for r in ddp_store.list_runs() if r["status"] == "finished")
    one = np.array([v for _, v in one_store.metric_series(events[-1].run_id, "train/loss")])
    two = np.array([v for _, v in ddp_store.metric_series(ddp_run["run_id"], "train/loss")])
    np.testing.assert_allclose(two, one, rtol=1e-4)  # reduced across ranks = the global mean


def test_each_torchrun_job_is_one_run_with_one_set_of_rows(torchrun):
    _, store, _ = torchrun
    runs = store.list_runs(kind="price")
    assert sorted(r["status"] for r in runs) == ["cancelled", "finished"]
    finished = next(r for r in runs if r["status"] == "finished")
    assert [s for s, _ in store.metric_series(finished["run_id"], "train/loss")] == [1, 2, 3, 4]
    assert [s for s, _ in store.metric_series(finished["run_id"], "val/loss")] == [2, 4]
    assert {c["step"] for c in store.checkpoints(finished["run_id"])} == {4}


def test_cancel_on_one_rank_stops_both_and_resumes_on_a_single_process(torchrun, tmp_path,
                                                                         monkeypatch):
    _, store, stdout = torchrun
    cancelled = next(r for r in store.list_runs(kind="price") if r["status"] == "cancelled")
    assert cancelled["step"] == 3  # agreed at the next logged step, on both ranks
    assert sorted(line.split()[2:] for line in stdout.splitlines() if line.startswith("cancel")) \
        == [["cancelled", "3"], ["cancelled", "3"]]
    events, resumed = single_process_run(monkeypatch, store, resume=cancelled["run_id"])
    assert isinstance(events[-1], Finished) and events[-1].status == "finished"
    assert events[-1].step == 4 and len(store.list_runs(kind="price")) == 2
    _, straight = single_process_run(monkeypatch, RunStore(tmp_path / "runs.db"))
    assert_close(resumed, straight)  # a world size change does not change the trajectory


def test_world_of_one_needs_no_process_group():
    assert distributed.world() == distributed.World(0, 1, 0)
    assert distributed.is_main() and not distributed.is_distributed()
    assert distributed.on_main(lambda x: x + 1, 1) == 2
    np.testing.assert_array_equal(distributed.shard(np.arange(5)), np.arange(5))
    assert distributed.main_rank_store("store") == "store"


def test_non_zero_ranks_read_the_store_but_never_write(monkeypatch, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run("price", dataset="x", fingerprint="f", config={}, seed=0, device="cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    muted = distributed.main_rank_store(store)
    muted.log_metrics(run_id, [(1, "train/loss", 1.0)])
    muted.finish_run(run_id, "finished")
    assert muted.get_run(run_id)["status"] == "running"
    assert store.metric_series(run_id, "train/loss") == []
    np.testing.assert_array_equal(distributed.shard(np.arange(5)), [1, 3])
