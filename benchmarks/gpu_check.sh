#!/usr/bin/env bash
# The CUDA subset of the benchmarks, in one short run (< 5 minutes) on a machine with an NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, with the project's venv
#   PYTHON=python3 PRESETS=tiny,small bash benchmarks/gpu_check.sh
#
# Prints, per preset: samples/s of one training step (bf16 autocast, fused AdamW) eager and
# compiled, and model FLOPs utilisation (FLOPs counted by torch.utils.flop_counter on one step,
# over the GPU's dense bf16 peak; set PEAK_TFLOPS when the GPU is not in the table below).
# Then one short run of the real price trainer on CUDA (pinned memory, non-blocking copies, fused
# AdamW, bf16) and the peak CUDA memory of one step per preset.
# Environment: PYTHON, PRESETS (tiny,small,base,large), COMPILE_PRESETS (tiny,small),
# STEPS (10), PEAK_TFLOPS, STEP_TIMEOUT (seconds per preset, 90).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export PRESETS="${PRESETS:-tiny,small,base,large}"
export COMPILE_PRESETS="${COMPILE_PRESETS:-tiny,small}"
export STEPS="${STEPS:-10}"
STEP_TIMEOUT="${STEP_TIMEOUT:-90}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to $PYTHON (torch.cuda.is_available() is False)" >&2
    exit 2
fi
"$PYTHON" - <<'EOF'
import torch
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}; "
      f"torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}")
EOF

# --- 1. throughput and MFU per preset (each preset in its own process, with a time limit) ---------
read -r -d '' THROUGHPUT <<'EOF' || true
import os, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, ".")
from engine.models import build_price_model

PEAK_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125,
                    "RTX 4090": 165, "RTX 3090": 71, "V100": 125}  # dense, no sparsity
BATCH = {"tiny": 64, "small": 64, "base": 32, "large": 16}
preset, compiled = sys.argv[1], sys.argv[2] == "1"
name = torch.cuda.get_device_name(0)
peak = float(os.environ.get("PEAK_TFLOPS") or next(
    (v for k, v in PEAK_BF16_TFLOPS.items() if k in name), 0)) * 1e12
dev = torch.device("cuda")
model = build_price_model(preset).to(dev).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
batch = BATCH.get(preset, 16)
x = torch.randn(batch, model.cfg.window, model.cfg.n_features, device=dev)
mask = torch.ones(batch, model.cfg.n_features, device=dev)
y = torch.randn(batch, model.cfg.horizon, device=dev)
fwd = torch.compile(model) if compiled else model

def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.mse_loss(fwd(x, mask).prices.float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

with FlopCounterMode(display=False) as counter:  # eager count: the same math either way
    with torch.autocast("cuda", dtype=torch.bfloat16):
        torch.nn.functional.mse_loss(model(x, mask).prices.float(), y).backward()
opt.zero_grad(set_to_none=True)
flops = counter.get_total_flops()
torch.cuda.synchronize(); t = time.perf_counter(); step(); torch.cuda.synchronize()
cold = time.perf_counter() - t
for _ in range(2):
    step()
torch.cuda.synchronize()
steps = int(os.environ["STEPS"])
t = time.perf_counter()
for _ in range(steps):
    step()
torch.cuda.synchronize()
per_step = (time.perf_counter() - t) / steps
mfu = f"{flops / per_step / peak:6.1%}" if peak else "   n/a (set PEAK_TFLOPS)"
print(f"{preset:>6} {'compile' if compiled else 'eager  '} batch {batch:>3}: "
      f"{batch / per_step:9.0f} samples/s, {flops / per_step / 1e12:7.1f} TFLOP/s, MFU {mfu}, "
      f"first step {cold:5.1f} s, max allocated {torch.cuda.max_memory_allocated() / 2**30:5.2f} GiB")
EOF

echo
echo "== training step throughput: bf16 autocast, fused AdamW (model FLOPs utilisation) =="
for preset in ${PRESETS//,/ }; do
    modes="0"
    [[ ",$COMPILE_PRESETS," == *",$preset,"* ]] && modes="0 1"
    for compiled in $modes; do
        timeout "$STEP_TIMEOUT" "$PYTHON" -c "$THROUGHPUT" "$preset" "$compiled" \
            || echo "${preset} compile=${compiled}: FAILED or over ${STEP_TIMEOUT} s (exit $?)"
    done
done

# --- 2. the real trainer on CUDA -------------------------------------------------------------
echo
echo "== price trainer on CUDA (tiny, 40 steps: pinned memory, non-blocking copies, fused AdamW, bf16) =="
timeout 120 "$PYTHON" - <<'EOF' || echo "trainer run FAILED or over 120 s (exit $?)"
import statistics, sys, tempfile
sys.path.insert(0, ".")
from engine.config import DataConfig, PRESETS, TrainConfig
from engine.store import RunStore
from engine.events import Finished, StepEvent
from engine.training.price import train_price

with tempfile.TemporaryDirectory() as home:
    events = list(train_price(["sse"], model_cfg=PRESETS["tiny"], data_cfg=DataConfig(),
                              train_cfg=TrainConfig(max_steps=40, batch_size=64, device="cuda",
                                                    precision="bf16", eval_every=40, log_every=10),
                              store=RunStore(f"{home}/runs.db"), runs_dir=f"{home}/runs"))
rates = [e.samples_per_s for e in events if isinstance(e, StepEvent)][1:]
done = events[-1]
print(f"status {done.status}; {statistics.median(rates):.0f} samples/s (median of logged windows); "
      f"val loss {done.metrics.get('val_loss', float('nan')):.4f}" if isinstance(done, Finished)
      else f"unexpected last event {done}")
EOF

# --- 3. peak memory of one step per preset (fp32, fresh process each) -----------------------------
echo
echo "== peak memory, one training step (fp32) =="
timeout 150 "$PYTHON" benchmarks/bench_memory.py --device cuda --presets "$PRESETS" --timeout 60 \
    || echo "memory check FAILED or over 150 s (exit $?)"
