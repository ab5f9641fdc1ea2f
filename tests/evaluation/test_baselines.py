"""The center and fullsup (FSL) baseline rows: maps, metrics by hand, training, the CLI."""

import csv
import math

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT, evaluate
from hydra import compose, initialize_config_dir
from oracle import max_box_acc, pxap
from torch.utils.data import Dataset

from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
from camlab.data.base import LocalizationDataModule
from camlab.errors import CamlabError
from camlab.evaluate import evaluate as camlab_evaluate
from camlab.evaluation.baselines import CenterBaseline, center_gaussian, check_method
from camlab.evaluation.fullsup import (
    build_fullsup,
    flip_batch,
    foreground_targets,
    resolve_init,
    train_fullsup,
)
from camlab.evaluation.module import CamEvaluation
from camlab.metrics import cams_to_scoremaps


class ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class BoxesOnly(LocalizationDataModule):
    """Noise images of 32 px with the given boxes (no masks) in every split."""

    class_names = ["a", "b"]
    in_channels = 3
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    image_size = 32

    def __init__(self, boxes):
        super().__init__(batch_size=4, num_workers=0)
        gen = torch.Generator().manual_seed(0)
        items = [
            {
                "image": torch.rand(3, 32, 32, generator=gen),
                "label": torch.tensor(i % 2),
                "box": torch.tensor([box]),
                "index": torch.tensor(i),
            }
            for i, box in enumerate(boxes)
        ]
        self.splits = {split: ListDataset(items) for split in ("train", "val", "test")}


def score(datamodule, methods, baselines, masks=False):
    """``CamEvaluation.results`` and rows of the test split."""
    classifier = GAPClassifier("resnet18", datamodule.num_classes, image_size=32).eval()
    evaluation = CamEvaluation(
        classifier, datamodule, methods, 0.01, (30, 50, 70), 0.2, (1,), True, masks,
        baselines=baselines,
    )  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.test(evaluation, verbose=False)
    return evaluation.results, evaluation.rows


def test_center_map_is_the_hand_computed_gaussian():
    # 3 x 3, sigma = 1/3 of the side = 1 px: exp(-r^2 / 2) with r^2 = 0, 1, 2.
    e1, e2 = math.exp(-0.5), math.exp(-1.0)
    expected = torch.tensor([[e2, e1, e2], [e1, 1.0, e1], [e2, e1, e2]], dtype=torch.float64)
    maps = CenterBaseline(1 / 3)(torch.randn(2, 3, 3, 3))
    assert maps.shape == (2, 3, 3) and maps.dtype == torch.float64
    torch.testing.assert_close(maps[0], expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(maps[1], expected, rtol=0, atol=1e-15)  # class-agnostic
    # After the protocol (resize to the same size is a copy, then min-max): corners 0, centre 1,
    # edges (e^-1/2 - e^-1) / (1 - e^-1) = 0.37754...
    scored = cams_to_scoremaps(maps, (3, 3))[0]
    edge = (e1 - e2) / (1 - e2)
    hand = torch.tensor([[0, edge, 0], [edge, 1, edge], [0, edge, 0]], dtype=torch.float64)
    torch.testing.assert_close(scored, hand, rtol=0, atol=1e-12)
    assert abs(edge - 0.3775406687981454) < 1e-15

    # 4 rows x 2 columns, sigma = 0.5: std 2 px along y, 1 px along x, centre (x, y) = (0.5, 1.5)
    # between pixels: (y=0, x=0) has dy = -1.5, dx = -0.5, so exp(-(2.25/4 + 0.25) / 2).
    tall = center_gaussian(4, 2, 0.5)
    assert tall[0, 0] == pytest.approx(math.exp(-0.40625), abs=1e-15)
    assert tall[1, 1] == pytest.approx(math.exp(-0.15625), abs=1e-15)
    torch.testing.assert_close(tall, tall.flip(0).flip(1))  # symmetric about the centre


def test_center_max_box_acc_on_centred_and_off_centre_boxes():
    # 32 x 32, centre 15.5. Every threshold of the centred Gaussian is a disc whose pixels span
    # a..31-a, so its box is [a, a, 32-a, 32-a] (the reference's +1 end; 31 at the border).
    # centred [8, 8, 23, 23] (16 px): best a = 8, IoU 256/289 = 0.886 (>= 0.7);
    # shifted [4, 4, 19, 19]: best a = 4, box [4, 4, 28, 28], IoU 256/625 = 0.41 (>= 0.3 only),
    #   and at that threshold the centred boxes have IoU 256/625 too (>= 0.3);
    # corner [0, 0, 7, 7] (8 px): best is the whole image, IoU 64/1024 (never a hit).
    boxes = [[8, 8, 23, 23], [8, 8, 23, 23], [4, 4, 19, 19], [0, 0, 7, 7]]
    results, rows = score(BoxesOnly(boxes), ["center"], {"center": CenterBaseline(0.5)})
    out = results["methods"]["center"]
    assert [float(out["v2"][f"max_box_acc@{d}"]) for d in (30, 50, 70)] == [75.0, 50.0, 50.0]
    assert float(out["v2"]["max_box_acc"]) == pytest.approx(175 / 3)
    assert float(out["v1"]["max_box_acc"]) == 50.0  # one disc: the largest contour is all of it
    best = [r["center"]["best_iou"] for r in rows]
    assert best == pytest.approx([256 / 289, 256 / 289, 256 / 625, 64 / 1024], abs=1e-12)
    assert [r["center"]["box"] for r in rows][:3] == [[8, 8, 24, 24]] * 2 + [[4, 4, 28, 28]]
    # At the fixed 20% the disc covers all rows and columns: box [0, 0, 31, 31], IoU <= 0.25.
    assert float(out["loc"]["gt_known_loc"]) == 0.0


def test_foreground_targets_and_flips_by_hand():
    boxes = torch.tensor([[[1, 0, 2, 1], [-1, -1, -1, -1]], [[0, 0, 0, 0], [3, 2, 4, 3]]])
    batch = {"image": torch.zeros(2, 1, 4, 5), "box": boxes}
    target, weight = foreground_targets(batch, use_masks=False)
    first = [[0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    second = [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]
    assert target.tolist() == [first, second] and bool((weight == 1).all())
    # Width 5: x -> 4 - x, so [1, 0, 2, 1] -> [2, 0, 3, 1]; padding rows stay -1.
    batch["image"] = torch.arange(40.0).reshape(2, 1, 4, 5)
    flipped = flip_batch(batch, torch.tensor([True, False]), use_masks=False)
    assert flipped["box"][0].tolist() == [[2, 0, 3, 1], [-1, -1, -1, -1]]
    assert torch.equal(flipped["box"][1], boxes[1])
    assert torch.equal(flipped["image"][0], batch["image"][0].flip(-1))
    assert torch.equal(foreground_targets(flipped, False)[0][0], target[0].flip(-1))

    mask = torch.tensor([[[0, 1, 255], [1, 1, 0]]], dtype=torch.uint8)
    target, weight = foreground_targets({"image": torch.zeros(1, 3, 2, 3), "mask": mask}, True)
    assert target.tolist() == [[[0, 1, 0], [1, 1, 0]]]
    assert weight.tolist() == [[[1, 1, 0], [1, 1, 1]]]


def test_fullsup_trains_deterministically_and_gives_maps():
    dm = ShapesDataModule(image_size=32, train_size=1, val_size=16, test_size=1, num_workers=0)
    classifier = GAPClassifier("resnet18", 4, image_size=32, hires_cam=True)
    runs = [
        train_fullsup(classifier, dm, init="scratch", epochs=3, batch_size=8, seed=3)
        for _ in range(2)
    ]
    (model, info), (again, _) = runs
    assert info["target"] == "mask" and info["num_images"] == 16 and info["steps"] == 6
    assert info["epoch_loss"][-1] < info["epoch_loss"][0]
    for p, q in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q)  # same seed, same weights (every DDP process trains one)
    maps = model(torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 2, 2) and bool(((maps > 0) & (maps < 1)).all())  # 1/16 of 32 px
    assert not model.training


@pytest.mark.parametrize(
    "backbone, arch, large, side",
    [("resnet50", "reference", True, 8), ("resnet10t", "timm", False, 2)],
)
def test_fullsup_has_the_classifiers_own_network(backbone, arch, large, side):
    """The FSL row of the results table: on the reference's networks (and timm's) the
    foreground model is the classifier's own network (its layers, its map size), not the
    torchvision network of the same name."""
    classifier = GAPClassifier(backbone, 4, image_size=64, arch=arch,
                               large_feature_map=large)  # fmt: skip
    model = build_fullsup(classifier, "scratch")
    names = {n for n, _ in model.features.named_modules()}
    assert names == {n for n, _ in classifier.net.features.named_modules()}
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))
        cams = classifier.net.features(torch.randn(1, 3, 64, 64))
    assert maps.shape == (1, side, side) == (1, *cams.shape[-2:])


@pytest.mark.slow
def test_fullsup_learns_and_beats_center_on_shapes():
    # 64 val images with masks, 10 epochs of 8 (80 steps) from scratch; scored on 64 test images.
    # Measured (Lightning trainer, 1 thread): BCE 0.53 -> 0.14; MaxBoxAccV2 40.6 vs 29.7
    # (center), PxAP 49.3 vs 36.8; with 5 epochs only 31.3 / 37.3.
    dm = ShapesDataModule(train_size=1, val_size=64, test_size=64, batch_size=8, num_workers=0)
    classifier = GAPClassifier("resnet18", 4, image_size=64, hires_cam=True)
    model, info = train_fullsup(classifier, dm, init="scratch", epochs=10, seed=0)
    loss = info["epoch_loss"]
    assert loss[-1] < 0.5 * loss[0], loss
    results, _ = score(
        dm, ["center", "fullsup"], {"center": CenterBaseline(0.5), "fullsup": model}, masks=True
    )
    center, fullsup = results["methods"]["center"], results["methods"]["fullsup"]
    assert float(fullsup["v2"]["max_box_acc"]) > float(center["v2"]["max_box_acc"]) + 5
    assert float(fullsup["pxap"]["pxap"]) > float(center["pxap"]["pxap"]) + 5


def test_baseline_errors():
    with pytest.raises(CamlabError, match="Valid choices.*Baselines: center, fullsup"):
        check_method("nope")
    check_method("center")
    with pytest.raises(CamlabError, match="must be > 0"):
        CenterBaseline(0)
    boxes_only = BoxesOnly([[8, 8, 23, 23]])
    classifier = GAPClassifier("resnet18", 2, image_size=32)
    with pytest.raises(CamlabError, match="has no pixel masks"):
        train_fullsup(classifier, boxes_only, target="mask", epochs=1)
    with pytest.raises(CamlabError, match="valid choices auto, checkpoint, imagenet, scratch"):
        train_fullsup(classifier, boxes_only, init="nope", epochs=1)
    # auto starts where the classifier started: ImageNet weights if it did, else from scratch.
    assert resolve_init(classifier, "auto") == "scratch"
    imagenet_run = GAPClassifier("resnet18", 2, pretrained=True, init_from_checkpoint=True)
    assert resolve_init(imagenet_run, "auto") == "imagenet"
    assert resolve_init(imagenet_run, "checkpoint") == "checkpoint"


def test_evaluate_script_writes_baseline_rows(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    out = evaluate(
        f"ckpt_path={ckpt}", "cam.methods=[cam,center,fullsup]", "baselines.fullsup.epochs=2",
        "num_workers=0", run_dir=tmp_path,
    )  # fmt: skip
    assert list(out["methods"]) == ["cam", "center", "fullsup"]
    # The center row is the oracle's score of the Gaussian on every test image.
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    gauss = cams_to_scoremaps(center_gaussian(64, 64, 0.5)[None], (64, 64))[0].numpy()
    boxes, masks = [], []
    for batch in dm.test_dataloader():
        boxes += [b[b[:, 0] >= 0].numpy() for b in batch["box"]]
        masks += list(batch["mask"].numpy() == 1)
    maps = [gauss] * len(boxes)
    center = out["methods"]["center"]
    assert center["max_box_acc_v2"] == max_box_acc(maps, boxes, 0.01, (30, 50, 70), True)[0]
    assert center["max_box_acc"] == max_box_acc(maps, boxes, 0.01, (50,), False)[0]
    assert center["pxap"] == pytest.approx(pxap(maps, masks, interval=0.01)[0], abs=1e-9)

    fullsup = out["baselines"]["fullsup"]
    assert fullsup["split"] == "val" and fullsup["num_images"] == 32
    assert fullsup["target"] == "mask" and fullsup["init"] == "scratch"  # auto: as trained
    assert fullsup["steps"] == 4 and len(fullsup["epoch_loss"]) == 2  # 32 images, batches of 16
    assert out["baselines"]["center"] == {"sigma": 0.5}
    for key in ("max_box_acc_v2", "max_box_acc", "pxap", "gt_known_loc"):
        assert 0 <= out["methods"]["fullsup"][key] <= 100
    for name in ("box_acc", "pxap", "examples"):
        for method in ("center", "fullsup"):
            image = cv2.imread(str(tmp_path / f"{name}_{method}.png"))
            assert image is not None and image.shape[0] > 60, (name, method)
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [sum(r["method"] == m for r in rows) for m in ("cam", "center", "fullsup")] == [24] * 3
    center_rows = [r for r in rows if r["method"] == "center"]
    hits = np.mean([float(r["iou_at_dataset_threshold"]) >= 0.5 for r in center_rows]) * 100
    assert hits == pytest.approx(center["max_box_acc_v2@50"])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["split=val", "cam.methods=[cam,fullsup]"], "is the split being scored"),
        (["cam.methods=[cam,centre]"], "Valid choices.*Baselines: center, fullsup"),
    ],
)
def test_evaluate_refuses_bad_baseline_settings(trained, tmp_path, overrides, expected):
    ckpt = trained / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}", *overrides]
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    with pytest.raises(CamlabError, match=expected):
        camlab_evaluate(cfg)
