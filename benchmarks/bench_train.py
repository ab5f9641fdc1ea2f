#!/usr/bin/env python
"""Training throughput of ``GAPClassifier`` under ``pl.Trainer`` vs a plain PyTorch loop.

    python benchmarks/bench_train.py                       # resnet18, batch 64, 84 px, 3 repeats
    python benchmarks/bench_train.py --steps 4 --repeats 1    # a fast check

Both sides train the same model (same seed, ``hires_cam=True`` as in configs/model/resnet18.yaml,
AdamW lr=1e-3 with the module's own parameter groups) on batches from the same
``MNISTLocDataModule(source="embedded")`` loader, on the same device, doing per step: forward,
cross-entropy, the ``MulticlassAccuracy`` update, backward, optimizer step. The first
``--warmup`` steps are not timed; the clock runs from the start of step ``warmup`` (batch already
fetched and on the device: Lightning's ``on_train_batch_start``) to the end of the last step
(``on_train_batch_end``), so both windows hold ``--steps`` steps and ``--steps - 1`` batch
fetches. Runs are interleaved (plain, lightning, plain, lightning, ...) and medians reported,
because the VM is shared with other jobs; throughput per CPU-second of the training process
(``time.process_time``, loader workers excluded on both sides) is reported next to wall-clock
throughput, as it is far less disturbed by other jobs. A CUDA GPU is used when available.
"""

import argparse
import functools
import gc
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from camlab.classifier import GAPClassifier
from camlab.data.mnist import MNISTLocDataModule


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(args: argparse.Namespace, dm: MNISTLocDataModule) -> GAPClassifier:
    torch.manual_seed(0)  # the same initial weights on both sides
    return GAPClassifier(
        backbone=args.backbone,
        num_classes=dm.num_classes,
        in_channels=dm.in_channels,
        pretrained=False,
        hires_cam=True,
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        mean=dm.mean,
        std=dm.std,
        class_names=dm.class_names,
        image_size=dm.image_size,
    )


def clock() -> tuple[float, float]:
    """(wall, CPU time of this process) in seconds; CPU time counts all its threads but not
    the loader workers (separate processes) and barely moves when other jobs take the cores."""
    return time.perf_counter(), time.process_time()


def run_plain(
    args: argparse.Namespace, dm: MNISTLocDataModule, device: torch.device
) -> tuple[float, float]:
    """(wall, CPU) seconds for ``args.steps`` timed steps of a hand-written loop."""
    model = build_model(args, dm).to(device)
    model.train()
    optimizer = model.configure_optimizers()  # the same parameter groups as under Lightning
    loader = dm.train_dataloader()
    total, step, start = args.warmup + args.steps, 0, (0.0, 0.0)
    while step < total:  # epochs wrap like the Trainer's when steps exceed one epoch
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if step == args.warmup:
                sync(device)
                start = clock()
            logits, _ = model.net.forward_with_features(batch["image"])
            loss = F.cross_entropy(logits, batch["label"], label_smoothing=0.0)
            model.train_acc(logits, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == total:
                break
    sync(device)
    end = clock()
    del loader
    return end[0] - start[0], end[1] - start[1]


class StepTimer(pl.Callback):
    """Clock from the start of train batch ``warmup`` to the end of the last one (counted
    across epochs, so it works when ``max_steps`` spans several)."""

    def __init__(self, warmup: int, total: int, device: torch.device) -> None:
        self.warmup, self.total, self.device = warmup, total, device
        self.seen, self.start, self.end = 0, (0.0, 0.0), (0.0, 0.0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.seen == self.warmup:
            sync(self.device)
            self.start = clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.seen += 1
        if self.seen == self.total:
            sync(self.device)
            self.end = clock()


def run_lightning(
    args: argparse.Namespace, dm: MNISTLocDataModule, device: torch.device
) -> tuple[float, float]:
    """(wall, CPU) seconds for ``args.steps`` timed steps under ``pl.Trainer.fit``."""
    model = build_model(args, dm)
    total = args.warmup + args.steps
    timer = StepTimer(args.warmup, total, device)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_steps=total,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    if timer.seen != total:
        raise RuntimeError(f"Lightning ran {timer.seen} steps, expected {total}")
    del trainer
    return timer.end[0] - timer.start[0], timer.end[1] - timer.start[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--canvas", type=int, default=84, help="image side (px)")
    parser.add_argument("--workers", type=int, default=1, help="data loader workers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved")
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({name}), torch threads {torch.get_num_threads()}, torch "
        f"{torch.__version__}, lightning {pl.__version__}; {args.backbone} hires_cam, batch "
        f"{args.batch}, {args.canvas} px, {args.warmup} warm-up + {args.steps} timed steps, "
        f"{args.workers} loader worker(s), {args.repeats} repeats"
    )
    dm = MNISTLocDataModule(
        source="embedded", canvas_size=args.canvas, batch_size=args.batch,
        num_workers=args.workers, pin_memory=device.type == "cuda",
    )  # fmt: skip
    dm.setup("fit")

    images = args.steps * args.batch
    wall: dict[str, list[float]] = {"plain": [], "lightning": []}
    cpu: dict[str, list[float]] = {"plain": [], "lightning": []}
    for r in range(args.repeats):
        for side, fn in (("plain", run_plain), ("lightning", run_lightning)):
            seconds, cpu_s = fn(args, dm, device)
            wall[side].append(images / seconds)
            cpu[side].append(images / cpu_s)
            print(
                f"  repeat {r + 1} {side:9s} {seconds:7.2f} s wall ({images / seconds:6.1f} img/s)"
                f"  {cpu_s:7.2f} s CPU ({images / cpu_s:6.1f} img/CPU-s)"
            )
            gc.collect()

    print("\n| loop | img/s (wall), median | min | max | img/CPU-s, median |")
    print("|---|---|---|---|---|")
    for side in wall:
        w = wall[side]
        print(
            f"| {side} | {statistics.median(w):.1f} | {min(w):.1f} | {max(w):.1f} "
            f"| {statistics.median(cpu[side]):.2f} |"
        )
    for label, rates in (("wall", wall), ("CPU", cpu)):
        ratio = statistics.median(rates["lightning"]) / statistics.median(rates["plain"])
        pairs = zip(rates["plain"], rates["lightning"], strict=True)
        per_repeat = ", ".join(f"{lt / p:.3f}" for p, lt in pairs)
        verdict = "meets" if ratio >= 0.95 else "below"
        print(
            f"ratio lightning / plain, {label:4s} (medians): {ratio:.3f} "
            f"(per repeat: {per_repeat}) -> {verdict} the 0.95 target"
        )


if __name__ == "__main__":
    main()
