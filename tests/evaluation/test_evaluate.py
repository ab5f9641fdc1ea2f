"""evaluate.py end to end: files written, numbers equal to the reference oracle."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, SHAPES, compose_config, evaluate, run
from faith_helpers import FAITH, assert_same, direct
from faith_helpers import KEYS as FAITH_KEYS
from hydra import compose, initialize_config_dir
from oracle import max_box_acc, pxap

from camlab.cam import compute_cam
from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
from camlab.errors import CamlabError
from camlab.evaluate import evaluate as camlab_evaluate
from camlab.metrics import cams_to_scoremaps


def oracle_metrics(ckpt, method: str) -> tuple[float, float, float]:
    """MaxBoxAccV2, MaxBoxAcc (v1) and PxAP of the test split by the per-tau OpenCV oracle."""
    model = GAPClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    maps, boxes, masks = [], [], []
    for batch in dm.test_dataloader():
        cams = compute_cam(model, batch["image"], method, targets=batch["label"])
        maps += list(cams_to_scoremaps(cams, (64, 64)).numpy())
        boxes += [b[b[:, 0] >= 0].numpy() for b in batch["box"]]
        masks += list(batch["mask"].numpy() == 1)
    v2 = max_box_acc(maps, boxes, 0.01, (30, 50, 70), multi=True)[0]
    v1 = max_box_acc(maps, boxes, 0.01, (50,), multi=False)[0]
    return v2, v1, pxap(maps, masks, interval=0.01)[0]


def test_report_files_and_reference_numbers(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    out = evaluate(
        f"ckpt_path={ckpt}", "calibrate_on=val", "num_workers=0", run_dir=tmp_path, cli=True
    )
    assert out["split"] == "test" and out["num_images"] == 24
    for method in ("cam", "gradcam"):
        m = out["methods"][method]
        v2, v1, ap = oracle_metrics(ckpt, method)
        assert m["max_box_acc_v2"] == v2 and m["max_box_acc"] == v1
        assert m["pxap"] == pytest.approx(ap, abs=1e-9)
        calibrated = m["calibrated_on_val"]
        assert calibrated["box_acc_v2"] <= m["max_box_acc_v2"]  # max over taus bounds it
        for d in (30, 50, 70):
            assert 0 <= m[f"best_threshold_v2@{d}"] < 1
        for name in ("box_acc", "pxap", "examples"):
            image = cv2.imread(str(tmp_path / f"{name}_{method}.png"))
            assert image is not None and image.shape[0] > 60, name
    assert set(out["classification"]) == {"top1_cls"}  # 4 classes: no top-5 (k > classes)

    # The same numbers and figures in TensorBoard, in the evaluation's own folder.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = {t: events.Scalars(t)[-1].value for t in events.Tags()["scalars"]}
    assert scalars["eval_test/classification/top1_cls"] == pytest.approx(
        out["classification"]["top1_cls"]
    )
    for method in ("cam", "gradcam"):
        m = out["methods"][method]
        for key in ("max_box_acc_v2", "max_box_acc", "pxap", "max_box_acc_v2@50"):
            assert scalars[f"eval_test/{method}/{key}"] == pytest.approx(m[key], rel=1e-6)
        calibrated = m["calibrated_on_val"]["box_acc_v2"]
        assert scalars[f"eval_test/{method}/calibrated_on_val/box_acc_v2"] == pytest.approx(
            calibrated
        )
        for name in ("box_acc", "pxap", "examples"):
            logged = events.Images(f"eval_test/{name}_{method}")[-1]
            image = cv2.imread(str(tmp_path / f"{name}_{method}.png"))
            assert (logged.height, logged.width) == image.shape[:2], name

    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 24
    cam_rows = [r for r in rows if r["method"] == "cam"]
    assert [int(r["index"]) for r in cam_rows] == list(range(24))
    for r in cam_rows:
        assert 0 <= float(r["iou_at_dataset_threshold"]) <= float(r["best_iou"]) <= 1
        assert int(r["box_x0"]) <= int(r["box_x1"]) < 64
    # V2@50 counts the images whose IoU at the data-set threshold reaches 0.5.
    hits = np.mean([float(r["iou_at_dataset_threshold"]) >= 0.5 for r in cam_rows]) * 100
    assert hits == pytest.approx(out["methods"]["cam"]["max_box_acc_v2@50"])


def test_val_split_matches_the_training_log(trained, tmp_path):
    """The evaluation of last.ckpt on val equals what the callback logged at that epoch."""
    logged = json.loads((trained / "metrics.json").read_text())["metrics"]
    out = evaluate(
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", "split=val", "cam.methods=[cam]",
        "metrics=[boxes]", "num_workers=0", run_dir=tmp_path,
    )  # fmt: skip
    cam = out["methods"]["cam"]
    assert cam["max_box_acc_v2"] == pytest.approx(logged["val/max_box_acc_v2"], abs=1e-4)
    assert cam["max_box_acc"] == pytest.approx(logged["val/max_box_acc"], abs=1e-4)
    assert cam["top1_loc"] == pytest.approx(logged["val/top1_loc"], abs=1e-4)
    assert cam["gt_known_loc"] == pytest.approx(logged["val/gt_known_loc"], abs=1e-4)
    assert cam["best_threshold_v1"] == pytest.approx(logged["val/max_box_acc_threshold"])
    assert out["classification"]["top1_cls"] == pytest.approx(logged["val/acc"], abs=1e-3)


def test_bad_checkpoint_path_gives_one_clear_error(tmp_path):
    out = run("evaluate.py", "ckpt_path=missing.ckpt", run_dir=tmp_path)
    assert out.returncode == 1
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["data=mnist_embedded", "metrics=[pxap]"], "has no pixel masks"),
        (["data=mnist_embedded"], "trained on another data set"),
        (["cam.methods=[gradcam,nope]"], "Valid choices"),
        ([*SHAPES, "metrics=[boxes,iou]"], "Valid entries"),
    ],
)
def test_bad_input_errors(trained, tmp_path, overrides, expected):
    ckpt = trained / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}", *overrides]
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    with pytest.raises(CamlabError, match=expected):
        camlab_evaluate(cfg)


def test_no_recorded_data_and_no_run_config_asks_for_data(trained, tmp_path):
    # A checkpoint alone (no run folder) still knows its data; one from before camlab recorded
    # it needs data=... on the command line.
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["data_config"]["module"] == "shapes"
    del checkpoint["hyper_parameters"]["data_config"]
    alone = tmp_path / "alone.ckpt"
    torch.save(checkpoint, alone)
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={alone}", f"paths.output_dir={tmp_path}"])
    with pytest.raises(CamlabError, match="does not record its data.*e.g. data=mnist_embedded"):
        camlab_evaluate(cfg)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(trained, tmp_path):
    """One evaluation with every part a rank could get wrong (CAM methods, the center and fullsup
    baselines, boxes, PxAP, faithfulness) in 2 processes (gloo) and in 1. fullsup trains under
    the same DDP trainer, each process on the whole val split in one order, so the averaged
    gradient is each one's own and both processes hold what one process trains."""
    ckpt = trained / "checkpoints" / "last.ckpt"
    common = [
        f"ckpt_path={ckpt}", "num_workers=0", "batch_size=5", "trainer.accelerator=cpu",
        "cam.methods=[cam,gradcam,center,fullsup]", "metrics=[boxes,pxap,faithfulness]",
        "baselines.fullsup.epochs=1", "num_examples=2", *FAITH,
    ]  # fmt: skip
    one = evaluate(*common, run_dir=tmp_path / "one")
    out = run("evaluate.py", *common, "trainer=ddp", "trainer.devices=2",
              run_dir=tmp_path / "two")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MEMBER: 2/2" in out.stdout + out.stderr  # two real processes (gloo)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["num_images"] == one["num_images"] == 24
    assert two["classification"] == one["classification"]
    assert two["baselines"] == one["baselines"]  # the same fullsup training, loss for loss
    # The summed faithfulness states are the metrics' own numbers on the split.
    assert_same(two["methods"]["cam"], direct(ckpt, "test"))
    # Ranks forward other batches (and Lightning gives each CPU process fewer threads): the
    # float32 forwards differ in the last bits. Faithfulness scores are sums of those (rel 1e-6);
    # a fullsup map pixel may cross a PxAP bin (measured 33.280045 vs 33.280044); the box
    # metrics, on uint8-quantised maps, are equal.
    for method in ("cam", "gradcam", "center", "fullsup"):
        a, b = one["methods"][method], two["methods"][method]
        for key in sorted(FAITH_KEYS):
            assert b.pop(key) == pytest.approx(a.pop(key), rel=1e-6, abs=1e-6), (method, key)
    assert two["methods"]["fullsup"].pop("pxap") == pytest.approx(
        one["methods"]["fullsup"].pop("pxap"), abs=1e-4
    )
    assert two["methods"] == one["methods"]
    per_image = [(tmp_path / d / "per_image.csv").read_text() for d in ("one", "two")]
    assert per_image[0] == per_image[1]


def test_layout_and_mixed_precision(trained, tmp_path):
    """channels_last=true and trainer.precision=bf16-mixed: the same evaluation within stated
    tolerances of the exact float32 NCHW default (24 test images: one image crossing an IoU
    threshold at one delta moves MaxBoxAccV2 by 100 / 24 / 3 points)."""
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    common = [ckpt, "metrics=[boxes,pxap]", "num_workers=0", "num_examples=2"]
    default = evaluate(*common, run_dir=tmp_path / "default")
    nhwc = evaluate(*common, "channels_last=true", run_dir=tmp_path / "nhwc")
    bf16 = evaluate(*common, "trainer.precision=bf16-mixed", run_dir=tmp_path / "bf16")
    one_image = 100 / 24 / 3
    for method in ("cam", "gradcam"):
        want = default["methods"][method]
        # NHWC sums in another order: float32 rounding only (PxAP measured 1.5e-5 points off).
        got = nhwc["methods"][method]
        assert abs(got["pxap"] - want["pxap"]) <= 1e-3
        assert abs(got["max_box_acc_v2"] - want["max_box_acc_v2"]) <= one_image
        got = bf16["methods"][method]
        print(method, {k: (got[k], want[k]) for k in ("max_box_acc_v2", "max_box_acc", "pxap")})
        assert got["pxap"] != want["pxap"]  # the forward did run in bf16
        assert abs(got["pxap"] - want["pxap"]) <= 1.0
        assert abs(got["max_box_acc_v2"] - want["max_box_acc_v2"]) <= 2 * one_image


def test_the_threshold_grid_is_the_training_runs(trained, tmp_path):
    """cam.cam_curve_interval=null (the default): the step the run trained with (the WSOL
    recipes' 0.001), read from its config as a plain value; an explicit value wins; a bad one
    in the file is refused."""
    import shutil

    from omegaconf import OmegaConf

    folder = tmp_path / "run"
    shutil.copytree(trained / "checkpoints", folder / "checkpoints")
    # What `python train.py` leaves (the trained fixture ran in-process: no .hydra).
    config = folder / ".hydra" / "config.yaml"
    config.parent.mkdir()
    OmegaConf.save(compose_config("train", *SHAPES, run_dir=folder), config)
    assert OmegaConf.load(config).cam_curve_interval == 0.01  # train.yaml's default
    text = config.read_text().replace("cam_curve_interval: 0.01", "cam_curve_interval: 0.05")
    config.write_text(text)
    common = [f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}", "metrics=[boxes]",
              "cam.methods=[cam]", "num_workers=0", "num_examples=1"]  # fmt: skip
    out = evaluate(*common, run_dir=tmp_path / "a")
    assert out["cam_curve_interval"] == 0.05
    best = out["methods"]["cam"]["best_threshold_v2@50"]
    assert round(best / 0.05, 6) == round(best / 0.05)  # a threshold of the 0.05 grid
    out = evaluate(*common, "cam.cam_curve_interval=0.02", run_dir=tmp_path / "b")
    assert out["cam_curve_interval"] == 0.02
    config.write_text(text.replace("cam_curve_interval: 0.05", "cam_curve_interval: abc"))
    with pytest.raises(CamlabError, match=r"cam_curve_interval='abc'.*cam\.cam_curve_interval="):
        evaluate(*common, run_dir=tmp_path / "c")


def test_reference_acol_is_scored_by_the_references_evaluation_map(tmp_path):
    """ACoL on the reference's network: validation and evaluate.py score the maximum of both
    branches' min-max normalised maps (the reference's ACoL CAM), not branch A's CAM."""
    import functools

    import pytorch_lightning as pl

    torch.manual_seed(0)
    model = GAPClassifier(
        backbone="vgg16", num_classes=4, arch="reference", method="acol", image_size=64,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
    ).eval()  # fmt: skip
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    batch = next(iter(dm.test_dataloader()))
    images, labels = batch["image"], batch["label"]
    expected = model.wsol_method.reference_cam(model.net, images, labels)
    with torch.no_grad():
        assert torch.equal(model.validation_step(batch, 0)["cams"], expected)
    assert torch.equal(model.evaluation_cam(images, labels), expected)
    branch_a = cams_to_scoremaps(compute_cam(model, images, "cam", targets=labels), (64, 64))
    assert not torch.allclose(cams_to_scoremaps(expected, (64, 64)), branch_a, atol=1e-3)

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "acol.ckpt"
    trainer.save_checkpoint(ckpt)
    out = evaluate(f"ckpt_path={ckpt}", *SHAPES, "cam.methods=[cam]", "metrics=[boxes]",
                   "num_examples=1", run_dir=tmp_path / "eval")  # fmt: skip
    maps, boxes = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            own = model.evaluation_cam(batch["image"], batch["label"])
            maps += list(cams_to_scoremaps(own, (64, 64)).numpy())
            boxes += [b[b[:, 0] >= 0].numpy() for b in batch["box"]]
    v2 = max_box_acc(maps, boxes, 0.01, (30, 50, 70), multi=True)[0]
    assert out["methods"]["cam"]["max_box_acc_v2"] == v2
