"""``python train.py trainer=ddp trainer.devices=2`` on the CPU (gloo), the way a user runs it:
one run folder written once, panels and summary lines from rank 0 alone, and validation metrics
that score every image once with rank 0's network, equal to the metrics computed outside
Lightning from the checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cb_helpers import METHODS, offline_metrics, read_events

from camlab.data import ShapesDataModule

ROOT = Path(__file__).resolve().parents[2]
# 25 val images: 13 + 12 on the two ranks (a padded sampler would score 26). resnet18's
# BatchNorm statistics drift apart on the ranks during training (no SyncBatchNorm on the CPU).
DATA = dict(image_size=64, train_size=64, val_size=25, test_size=8, batch_size=16)


@pytest.mark.slow
def test_train_py_two_process_ddp(tmp_path):
    overrides = [
        "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1", "data=shapes", "data.num_workers=0",
        *(f"data.{k}={v}" for k, v in DATA.items()), "model.scheduler=null", "test=false",
        "callbacks.model_checkpoint.monitor=val/max_box_acc_v2", "~callbacks.rich_progress_bar",
        f"callbacks.cam_panel.methods=[{','.join(METHODS)}]", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr  # two real processes

    # One run folder, written once: one event file, one best and one last checkpoint.
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[1] == "last.ckpt", checkpoints
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert json.loads((tmp_path / "metrics.json").read_text())["value"] is not None

    events = read_events(tmp_path / "tensorboard")
    steps = [e.step for e in events.Scalars("val/acc")]
    assert len(steps) == 2  # 64 images / (16 per rank x 2 ranks): 2 steps per epoch
    for method in METHODS:  # rank 0 only, once: step 0, then at each validation's step
        cards = [t for t in events.Tags()["images"] if t.startswith(f"cam/{method}/")]
        assert len(cards) == 3, cards  # 16 images, 6 a card
        for tag in cards:
            assert [e.step for e in events.Images(tag)] == [0, *steps]

    # The two ranks' shares of the val split, summed by torchmetrics: the whole split, scored
    # with rank 0's BatchNorm statistics (those last.ckpt holds).
    expected = offline_metrics(
        tmp_path / "checkpoints" / "last.ckpt", ShapesDataModule(num_workers=0, **DATA)
    )
    for name, value in expected.items():
        logged = [e.value for e in events.Scalars(name)]
        assert len(logged) == 2, name
        # val/loss: float32 sums in another order; the rest: counts over the whole split.
        assert logged[-1] == pytest.approx(value, rel=1e-5, abs=1e-5), name

    # One summary line per epoch in Hydra's train.log, from rank 0 alone.
    log = (tmp_path / "train.log").read_text().splitlines()
    summary = [line for line in log if "camlab.callbacks.epoch_summary" in line]
    assert len(summary) == 2, summary
    assert f"epoch 1/2 step {steps[0]} " in summary[0]
    assert f"epoch 2/2 step {steps[1]} " in summary[1]
    assert "val/acc" in summary[1] and "train/loss" in summary[1]
    rank1 = (tmp_path / "train_ddp_process_1.log").read_text()
    assert "epoch_summary" not in rank1
