"""evaluate.py metrics=[...,faithfulness]: the numbers of camlab.metrics on the split."""

import json

import pytest
import torch
from conftest import evaluate, run

from camlab.cam import compute_cam
from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
from camlab.evaluate import scorable_metrics
from camlab.metrics import FaithfulnessMetrics, cams_to_scoremaps

# Small settings, noise-free ROAD: the script's numbers are deterministic and cheap.
FAITH = ["faithfulness.steps=4", "faithfulness.road_percentiles=[20,80]",
         "faithfulness.road_noise=0.0"]  # fmt: skip
KEYS = {
    "average_drop", "increase_in_confidence", "deletion_auc", "insertion_auc", "road_morf",
    "road_lerf", "road", "road_morf_curve", "road_lerf_curve", "pointing_game",
    "pointing_game_class_mean",
}  # fmt: skip


def direct(ckpt, split: str) -> dict:
    """FaithfulnessMetrics of the checkpoint's CAMs on the split, batch by batch."""
    model = GAPClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    metric = FaithfulnessMetrics(
        dm.num_classes, steps=4, road_percentiles=[20, 80], road_noise=0.0, seed=0
    )
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    with torch.inference_mode():  # as in Lightning's test loop
        for batch in loader:
            images, labels = batch["image"], batch["label"]
            maps = cams_to_scoremaps(compute_cam(model, images, "cam", targets=labels), (64, 64))
            boxes = [b[b[:, 0] >= 0] for b in batch["box"]]
            metric.update(model, images, maps, labels, boxes=boxes)
    return metric.compute()


def assert_same(got: dict, expected: dict) -> None:
    assert KEYS <= set(got)
    for name, value in expected.items():
        # rel: the script passes its NCHW logits as the base scores, the metrics here recompute
        # them channels-last (float32 rounding, ~1e-7 relative)
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name


def test_faithfulness_numbers_are_the_metrics_on_the_scored_split(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    out = evaluate(
        f"ckpt_path={ckpt}", "cam.methods=[cam]", "metrics=[boxes,faithfulness]",
        "calibrate_on=val", "num_workers=0", *FAITH, run_dir=tmp_path,
    )  # fmt: skip
    cam = out["methods"]["cam"]
    assert_same(cam, direct(ckpt, "test"))  # test's numbers, not the calibration split's
    assert "max_box_acc_v2" in cam and "calibrated_on_val" in cam  # box metrics still there
    assert 0 <= cam["average_drop"] <= 100 and 0 <= cam["pointing_game"] <= 100
    assert len(cam["road_morf_curve"]) == 2


def test_faithfulness_is_opt_in():
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    assert scorable_metrics(dm, "test", None) == {"boxes", "pxap"}
    assert scorable_metrics(dm, "test", ["faithfulness"]) == {"faithfulness"}


@pytest.mark.slow
def test_two_process_ddp_faithfulness_equals_the_metrics(trained, tmp_path):
    """Each rank scores part of the split; the summed states give the one-process numbers."""
    ckpt = trained / "checkpoints" / "last.ckpt"
    common = [f"ckpt_path={ckpt}", "cam.methods=[cam]", "metrics=[faithfulness]",
              "num_workers=0", "batch_size=5", "trainer.accelerator=cpu", *FAITH]  # fmt: skip
    out = run("evaluate.py", *common, "trainer=ddp", "trainer.devices=2",
              run_dir=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MEMBER: 2/2" in out.stdout + out.stderr
    two = json.loads((tmp_path / "metrics.json").read_text())
    assert two["num_images"] == 24
    assert_same(two["methods"]["cam"], direct(ckpt, "test"))
