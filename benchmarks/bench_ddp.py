#!/usr/bin/env python
"""Training throughput of ``GAPClassifier`` under Lightning DDP with 1 and 2 processes.

    python benchmarks/bench_ddp.py                          # CPU, 1 vs 2 processes, 2 repeats
    python benchmarks/bench_ddp.py --steps 4 --repeats 1    # a fast check
    python benchmarks/bench_ddp.py --accelerator gpu --devices 1 2 4   # GPUs: one per process

Each measurement is a fresh ``python bench_ddp.py --worker ...`` run (Lightning's DDP launcher
re-runs that command for ranks 1..), so the sizes are measured in the same invocation,
interleaved (1, 2, 1, 2, ...) because the VM is shared with other jobs, and medians reported.
Every process trains on ``--batch`` images per step (the per-device batch, as ``data.batch_size``
with ``trainer=ddp``), so a step of N processes trains on N * batch images: images/s =
timed steps * batch * N / wall seconds, clocked on rank 0 from the start of step ``--warmup``
to the end of the last step (the gradient all-reduce keeps the ranks in step). The model,
data and optimizer are those of ``bench_train.py`` (resnet18 ``hires_cam``, embedded MNIST
on an 84 px canvas, AdamW). On the CPU Lightning gives each of N processes cpu_count // N
threads (``--threads`` fixes the count), so the processes share the same cores; on GPUs each
process has its own device.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import StepTimer, build_model  # noqa: E402

from camlab.data.mnist import MNISTLocDataModule  # noqa: E402


def worker(args: argparse.Namespace) -> None:
    """One DDP training run with ``args.devices[0]`` processes; rank 0 writes ``args.out``."""
    warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
    dm = MNISTLocDataModule(
        source="embedded", canvas_size=args.canvas, batch_size=args.batch,
        num_workers=args.workers, pin_memory=args.accelerator == "gpu",
    )  # fmt: skip
    dm.setup("fit")
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    total = args.warmup + args.steps
    timer = StepTimer(args.warmup, total, device)
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.devices[0],
        strategy="ddp",
        max_steps=total,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(build_model(args, dm), datamodule=dm)
    if trainer.is_global_zero:
        if timer.seen != total:
            raise RuntimeError(f"Lightning ran {timer.seen} steps, expected {total}")
        seconds = timer.end[0] - timer.start[0]
        images = args.steps * args.batch * trainer.world_size
        result = {"seconds": seconds, "images": images, "threads": torch.get_num_threads()}
        Path(args.out).write_text(json.dumps(result))


def measure(args: argparse.Namespace, devices: int, out: Path) -> dict:
    """Runs one worker (and, through Lightning, its other ranks) and reads rank 0's result."""
    cmd = [
        sys.executable, __file__, "--worker", "--devices", str(devices), "--out", str(out),
        "--accelerator", args.accelerator, "--backbone", args.backbone, "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--batch", str(args.batch), "--canvas", str(args.canvas),
        "--workers", str(args.workers),
    ]  # fmt: skip
    # Lightning sets torch's threads from OMP_NUM_THREADS, or to cpu_count // processes.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2],
                        help="process counts to compare (the first is the baseline)")  # fmt: skip
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=64, help="images per process and step")
    parser.add_argument("--canvas", type=int, default=84, help="image side (px)")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers per process")
    parser.add_argument("--repeats", type=int, default=2, help="runs per size, interleaved")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch threads per process (0: Lightning's choice, cpu_count // processes)",
    )  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(
        f"{args.accelerator}, {os.cpu_count()} CPUs, torch {torch.__version__}, lightning "
        f"{pl.__version__}; {args.backbone} hires_cam, batch {args.batch} per process, "
        f"{args.canvas} px, {args.warmup} warm-up + {args.steps} timed steps, {args.workers} "
        f"loader worker(s) per process, {args.repeats} repeats, "
        f"{args.threads or 'cpu_count // processes'} torch thread(s) per process"
    )
    rates: dict[int, list[float]] = {n: [] for n in args.devices}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for n in args.devices:
                tic = time.perf_counter()
                res = measure(args, n, Path(tmp) / f"{n}_{r}.json")
                rates[n].append(res["images"] / res["seconds"])
                print(
                    f"  repeat {r + 1}, {n} process(es): {res['images']} images in "
                    f"{res['seconds']:.2f} s = {rates[n][-1]:.1f} img/s ({res['threads']} torch "
                    f"thread(s) per process; run {time.perf_counter() - tic:.0f} s with start-up)"
                )

    base = statistics.median(rates[args.devices[0]])
    print(f"\n| processes | img/s, median | min | max | speed-up vs {args.devices[0]} |")
    print("|---|---|---|---|---|")
    for n, values in rates.items():
        med = statistics.median(values)
        print(f"| {n} | {med:.1f} | {min(values):.1f} | {max(values):.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
