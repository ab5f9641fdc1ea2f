"""evaluate.py metrics=[...,quantus]: the numbers of camlab.metrics.explanation on the split."""

import pytest
import torch
from conftest import evaluate

from camlab.cam import compute_cam
from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
from camlab.errors import CamlabError
from camlab.evaluation import report
from camlab.evaluation.module import box_masks
from camlab.metrics import cams_to_scoremaps
from camlab.metrics.explanation import ExplanationMetrics

NAMES = ["relevance_mass_accuracy", "sparseness", "max_sensitivity", "random_logit", "mprt"]
OPTIONS = {"max_sensitivity": {"nr_samples": 3}, "mprt": {"layer_order": "independent"}}
QUANTUS = [
    "quantus.num_images=6", f"quantus.metrics=[{','.join(NAMES)}]",
    "quantus.options.max_sensitivity.nr_samples=3",
    "+quantus.options.mprt.layer_order=independent",
]  # fmt: skip


def direct(ckpt, num_images: int) -> dict:
    """ExplanationMetrics of the checkpoint's CAMs on the first test images, by hand: the
    shapes masks as ground truth, CAM re-run on the perturbed inputs / randomised copies."""
    model = GAPClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    batch = next(iter(dm.test_dataloader()))
    images, labels = batch["image"][:num_images], batch["label"][:num_images]
    masks = batch["mask"][:num_images].reshape(num_images, 64, 64) > 0.5

    def explain(net, x, targets):
        return cams_to_scoremaps(compute_cam(net, x, "cam", targets=targets), (64, 64)).float()

    options = {**OPTIONS, "random_logit": {"num_classes": dm.num_classes}}
    metric = ExplanationMetrics(NAMES, options, masks=True, seed=0)
    with torch.inference_mode():  # as in Lightning's test loop
        metric.update(model, images, explain(model, images, labels), labels, masks, explain)
    return metric.compute()


def test_quantus_numbers_are_the_metrics_on_the_scored_split(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    out = evaluate(
        f"ckpt_path={ckpt}", "cam.methods=[cam]", "metrics=[boxes,quantus]", "num_workers=0",
        *QUANTUS, run_dir=tmp_path,
    )  # fmt: skip
    got = out["methods"]["cam"]["quantus"]
    expected = direct(ckpt, 6)
    assert set(got) >= set(NAMES)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert "max_box_acc_v2" in out["methods"]["cam"]  # the box metrics still there
    assert (tmp_path / "tensorboard").is_dir()


def test_boxes_fill_the_localisation_masks():
    boxes = [torch.tensor([[1, 0, 2, 1]]), torch.tensor([[0, 0, 0, 0], [3, 3, 3, 3]])]
    masks = box_masks(boxes, (4, 4))
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[0, 0:2, 1:3] = True  # inclusive ends
    expected[1, 0, 0] = expected[1, 3, 3] = True
    assert torch.equal(masks, expected)


def test_unknown_metric_and_option_name_the_valid_ones(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    with pytest.raises((ValueError, CamlabError), match="valid: .*relevance_mass_accuracy"):
        evaluate(f"ckpt_path={ckpt}", "metrics=[quantus]", "quantus.metrics=[pixelflip]",
                 run_dir=tmp_path)  # fmt: skip
    with pytest.raises((ValueError, CamlabError), match="valid: .*nr_samples"):
        evaluate(f"ckpt_path={ckpt}", "metrics=[quantus]", "quantus.metrics=[max_sensitivity]",
                 "+quantus.options.max_sensitivity.samples=3", run_dir=tmp_path)  # fmt: skip


def test_table_shows_nan_counts_beside_the_means():
    metrics = {
        "cam": {"quantus": {"mprt": -0.05, "sparseness": 0.38}},
        "gradcam": {"quantus": {"mprt": 0.0166, "mprt_nan": 23, "sparseness": 0.381}},
        "center": {"max_box_acc_v2": 50.0},  # no Quantus metrics: no column
    }
    assert report.format_quantus_table(metrics).splitlines() == [
        "| metric | cam | gradcam |",
        "|---|---|---|",
        "| mprt | -0.05 | 0.0166 (23 NaN) |",
        "| sparseness | 0.38 | 0.381 |",
    ]
