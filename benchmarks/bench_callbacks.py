#!/usr/bin/env python
"""What the default training callbacks (``cam_panel`` + ``val_localization``) cost per epoch.

    python benchmarks/bench_callbacks.py             # 15 train batches, full val, 3 repeats
    python benchmarks/bench_callbacks.py --train-batches 5 --repeats 1   # a fast check

The config is ``configs/train.yaml`` composed with Hydra (embedded MNIST, 84 px canvases, batch 64,
resnet18 with ``hires_cam``, callbacks/default.yaml, TensorBoard logger) plus ``--override``s; the
data module and a fresh model (same seed) are built from it, and ``pl.Trainer`` is built directly
for a 1-epoch fit with ``limit_train_batches=--train-batches`` and the full validation split
(500 images, 8 batches), no sanity check, no checkpointing, no progress bar. Two variants run
interleaved, ``--repeats`` times each (order alternates): **without** the two callbacks and
**with** them (as configured in callbacks/default.yaml + cam_panel.yaml). Medians are reported
because the VM is shared with other jobs.

Measured per fit (a timer callback, first in the list):

* train time (``on_train_epoch_start`` -> ``on_validation_epoch_start``) and validation time
  (``on_validation_epoch_start`` -> ``on_train_epoch_end``, after every callback's
  ``on_validation_epoch_end`` and ``on_validation_end``);
* directly, the time spent inside the callbacks' own hooks: ``CAMPanel`` after the epoch
  (``on_validation_end``; the one-off step-0 panel in ``on_train_start`` is reported
  apart) and ``ValLocalization`` (every ``on_validation_batch_end`` + ``on_validation_epoch_end``).

A "full epoch" is extrapolated from the run without callbacks: train time per batch x the
batches of a full epoch (ceil(3500 / 64) = 55) + the full validation time. Costs are reported as a
percentage of that full epoch (the target: < 5%), and as the growth of the measured (short)
epoch with vs without the callbacks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from pytorch_lightning.callbacks import Callback

from camlab.callbacks import CAMPanel, ValLocalization
from camlab.instantiate import build, build_all

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CALLBACKS = ("cam_panel", "val_localization")


class Timer(Callback):
    """Wall-clock marks of one fit's epoch (sync'd on CUDA)."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def _mark(self, name: str, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.marks[name] = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._mark("train_start", pl_module)

    def on_validation_epoch_start(self, trainer, pl_module):
        self._mark("val_start", pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        # After validation and every callback's on_validation_epoch_end (the fit loop runs
        # validation at the end of the epoch, before on_train_epoch_end).
        self._mark("epoch_end", pl_module)


def timed(cls: type) -> type:
    """Subclass of a callback that adds the wall time of its hooks to ``self.cost[hook]``."""

    def wrap(name: str):
        base = getattr(cls, name)

        def hook(self, trainer, pl_module, *args, **kwargs):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            t0 = time.perf_counter()
            out = base(self, trainer, pl_module, *args, **kwargs)
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.cost[name] = self.cost.get(name, 0.0) + time.perf_counter() - t0
            return out

        return hook

    hooks = (
        "on_train_start",
        "on_validation_batch_end",
        "on_validation_epoch_end",
        "on_validation_end",
    )
    body = {name: wrap(name) for name in hooks if name in cls.__dict__}

    def init(self, *args, **kwargs):
        cls.__init__(self, *args, **kwargs)
        self.cost = {}

    body["__init__"] = init
    return type(f"Timed{cls.__name__}", (cls,), body)


TIMED = {"cam_panel": timed(CAMPanel), "val_localization": timed(ValLocalization)}


def one_fit(cfg, with_callbacks: bool, train_batches: int, root: str) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data, "data")
    model = build(
        cfg.model,
        "model",
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        mean=list(datamodule.mean),
        std=list(datamodule.std),
        class_names=list(datamodule.class_names),
        image_size=datamodule.image_size,
    )
    timer = Timer()
    callbacks: list[Callback] = [timer]
    if with_callbacks:
        for name in CALLBACKS:
            node = dict(cfg.callbacks[name])
            node.pop("_target_")
            callbacks.append(TIMED[name](**node))
    loggers = build_all(cfg.get("logger"), "logger")
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_epochs=1,
        limit_train_batches=train_batches,
        limit_val_batches=1.0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=datamodule)
    m = timer.marks
    out = {
        "train": m["val_start"] - m["train_start"],
        "val": m["epoch_end"] - m["val_start"],
        "epoch": m["epoch_end"] - m["train_start"],
        "val_batches": float(trainer.num_val_batches[0]),
    }
    for cb in callbacks[1:]:
        if isinstance(cb, CAMPanel):
            out["panel_step0"] = cb.cost.get("on_train_start", 0.0)
            out["panel_epoch"] = cb.cost.get("on_validation_end", 0.0)
        elif isinstance(cb, ValLocalization):
            out["valloc_batches"] = cb.cost.get("on_validation_batch_end", 0.0)
            out["valloc_compute"] = cb.cost.get("on_validation_epoch_end", 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-batches", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        overrides = [f"paths.output_dir={root}", *args.override]
        with initialize_config_dir(str(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        print(
            f"model={cfg.model.backbone} hires_cam={cfg.model.hires_cam} "
            f"canvas={cfg.data.canvas_size} batch={cfg.data.batch_size} "
            f"panel methods={list(cfg.callbacks.cam_panel.methods)} "
            f"num_images={cfg.callbacks.cam_panel.num_images} "
            f"cam_curve_interval={cfg.callbacks.val_localization.cam_curve_interval} "
            f"threads={torch.get_num_threads()}"
        )
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            for with_cb in order:
                res = one_fit(cfg, with_cb, args.train_batches, root)
                runs[with_cb].append(res)
                print(
                    f"repeat {r} {'with   ' if with_cb else 'without'}: "
                    + " ".join(f"{k}={v:.2f}" for k, v in res.items()),
                    flush=True,
                )

    def med(with_cb: bool, key: str) -> float:
        return statistics.median(run[key] for run in runs[with_cb])

    n_val = int(med(False, "val_batches"))
    full_batches = math.ceil(3500 / cfg.data.batch_size)
    per_batch = med(False, "train") / args.train_batches
    full_epoch = per_batch * full_batches + med(False, "val")
    panel = med(True, "panel_epoch")
    valloc = med(True, "valloc_batches") + med(True, "valloc_compute")
    total = panel + valloc
    grow = med(True, "epoch") - med(False, "epoch")

    def pct(x: float) -> str:
        return f"{100 * x / full_epoch:.1f}%"

    print()
    print(f"medians of {args.repeats} repeats; {args.train_batches} train batches, {n_val} val")
    print(
        f"train step {1000 * per_batch:.0f} ms/batch; validation without callbacks "
        f"{med(False, 'val'):.2f} s, with {med(True, 'val'):.2f} s"
    )
    print(f"full epoch (without callbacks, {full_batches} train batches + val): {full_epoch:.1f} s")
    print("| part | s per epoch | % of full epoch |")
    print("| --- | --- | --- |")
    print(f"| cam_panel (after-epoch panels) | {panel:.2f} | {pct(panel)} |")
    print(f"| val_localization (batch updates + compute) | {valloc:.2f} | {pct(valloc)} |")
    print(
        f"| &nbsp;&nbsp;of which batch updates | {med(True, 'valloc_batches'):.2f} | "
        f"{pct(med(True, 'valloc_batches'))} |"
    )
    print(f"| both (hook time) | {total:.2f} | {pct(total)} |")
    print(f"| both (measured epoch growth, with - without) | {grow:.2f} | {pct(grow)} |")
    print(f"one-off step-0 panel (on_train_start): {med(True, 'panel_step0'):.2f} s")
    print(
        f"short epoch: without {med(False, 'epoch'):.2f} s, with {med(True, 'epoch'):.2f} s "
        f"(+{100 * grow / med(False, 'epoch'):.0f}%)"
    )
    print(f"benchmark wall time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
