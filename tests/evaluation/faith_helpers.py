"""The evaluation's faithfulness numbers recomputed directly with camlab.metrics."""

import pytest
import torch

from camlab.cam import compute_cam
from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
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
