"""Each method really learns: a few dozen steps of resnet18 on the embedded real MNIST digits
(56 px canvases), through train.py's `train` with `method=<name>`."""

import csv
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from camlab.classifier import GAPClassifier
from camlab.methods import WSOL_METHODS
from camlab.train import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEPS, BATCH, VAL_BATCHES = 30, 32, 4  # 960 training digits; 128 validation digits
# HaS hides half of every image in 4 px patches and ADL drops the most active regions: both learn
# more slowly. At 30 steps HaS reached 21.9% with 2 threads but 15.6% with 1 (the suite's
# xdist workers): float rounding of the thread count changes the trajectory; too close to chance.
METHOD_STEPS = {"has": 60, "adl": 60}
# Measured (seed 0, batch 32, one torch thread as in the suite; val/acc on 128 digits;
# train/loss averaged over the first and the last 5 steps): 30 steps: cam 54.7% (2.45 -> 1.10),
# acol 38.3% (4.46 -> 2.38, two CE terms), spg 37.5% (3.20 -> 1.53), cutmix 28.9% (2.47 -> 2.31,
# the loss of mixed images); 60 steps: has 33.6% (2.52 -> 1.57; 43.0% with 2 threads), adl
# 26.6% (2.37 -> 1.31). Chance is 10% (sd 2.7% on 128 digits).
MIN_VAL_ACC = 17.0
MAX_LOSS_RATIO = 0.97  # last-5 mean / first-5 mean


@pytest.mark.slow
# `cam` (plain training) is tests/train/test_learning.py's run: 2 epochs, > 60% and a CAM that
# points at the digit, and its checkpoint loads alone; here it would repeat a weaker check.
@pytest.mark.parametrize("method", [m for m in WSOL_METHODS if m != "cam"])
def test_method_learns_embedded_digits(tmp_path, method):
    steps = METHOD_STEPS.get(method, STEPS)
    overrides = [
        f"paths.output_dir={tmp_path}", f"method={method}", "seed=0", "data.num_workers=0",
        "data.canvas_size=56", "data.scale_range=[1.0,1.5]", f"data.batch_size={BATCH}",
        "trainer.accelerator=cpu", "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}",
        f"trainer.limit_val_batches={VAL_BATCHES}", "+trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1", "logger=csv", "~callbacks.rich_progress_bar",
        "~callbacks.cam_panel", "~callbacks.val_localization", "test=false",
    ]  # fmt: skip
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    val_acc = train(cfg)

    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert len(losses) == steps
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"{method}: val/acc {val_acc:.1f}%, train/loss {first:.3f} -> {last:.3f}")
    assert last < MAX_LOSS_RATIO * first
    assert val_acc > MIN_VAL_ACC

    # The run's checkpoint is the method's model and loads alone.
    model = GAPClassifier.load_from_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"))
    assert model.hparams.method == method and type(model.wsol_method) is WSOL_METHODS[method]
