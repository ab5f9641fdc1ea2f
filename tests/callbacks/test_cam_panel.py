"""CAMPanel: panels in TensorBoard, fixed images and GT boxes, no side effects on training."""

import copy
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from cb_helpers import METHODS, decode, make_data, make_model, read_events
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from camlab.callbacks import CAMPanel, ValLocalization
from camlab.callbacks.panel_images import select_indices
from camlab.callbacks.panel_layout import CARD_WIDTH, PADDING, SEPARATOR, plan_grid, text_strip
from camlab.cam import compute_cam
from camlab.cam.overlay import denormalize
from camlab.data import ShapesDataModule
from camlab.data.mnist import MNISTLocDataModule
from camlab.errors import CamlabError
from camlab.metrics import MaxBoxAcc, cams_to_scoremaps

GREEN = np.array([0, 255, 0], np.uint8)
CAPTION_H = text_strip(8, ["a", "b"]).shape[1]
HEADER_H = text_strip(8, ["a"]).shape[1]
UNIT_W = 2 * 64 + SEPARATOR  # side-by-side tile of a 64 px image
COLS = 2  # two side-by-side tiles fit the 350 px card


def tile_origin(k: int, cols: int = COLS, unit_w: int = UNIT_W) -> tuple[int, int]:
    """Top-left pixel (row, column) of tile ``k`` of a default panel of 64 px images."""
    top = HEADER_H + PADDING + (k // cols) * (64 + CAPTION_H + PADDING)
    return top, PADDING + (k % cols) * (unit_w + PADDING)


def red_text(region: np.ndarray) -> bool:
    r, g, b = (region[..., i].astype(int) for i in range(3))
    return bool(((r > 150) & (g < 110) & (b < 110)).any())


def test_panels_share_the_step_axis_of_the_scalars(fitted):
    """Image cards and charts on one axis: step 0 before training, then exactly the steps of
    the validation scalars (not the epoch number)."""
    root, _, _ = fitted
    events = read_events(root / "tb" / "run")
    assert sorted(events.Tags()["images"]) == sorted(f"cam/{m}" for m in METHODS)
    scalar_steps = [e.step for e in events.Scalars("val/acc")]
    assert scalar_steps == [3, 7]  # 4 batches per epoch
    assert [e.step for e in events.Scalars("val/max_box_acc_v2")] == scalar_steps
    width = COLS * UNIT_W + (COLS + 1) * PADDING
    height = HEADER_H + 8 * (64 + CAPTION_H) + 9 * PADDING
    assert width <= CARD_WIDTH
    for method in METHODS:
        images = events.Images(f"cam/{method}")
        assert [e.step for e in images] == [0, *scalar_steps]
        assert {(e.width, e.height) for e in images} == {(width, height)}
        pixels = [decode(e) for e in images]
        assert not np.array_equal(pixels[0], pixels[-1])  # the CAMs changed with training


def test_gt_boxes_identical_across_epochs_and_left_half_is_the_plain_image(fitted):
    root, _, model = fitted
    events = read_events(root / "tb" / "run")
    logged = [decode(e) for m in METHODS for e in events.Images(f"cam/{m}")]
    masks = [(p == GREEN).all(-1) for p in logged]
    assert masks[0].sum() > 16 * 20  # a drawn box in every tile
    for mask in masks[1:]:
        assert np.array_equal(mask, masks[0])
    dataset = make_data().dataset("val")
    indices = select_indices(lambda i: int(dataset[i]["label"]), len(dataset), 16, 4)
    plain = denormalize(
        torch.stack([dataset[i]["image"] for i in indices]), model.hparams.mean, model.hparams.std
    ).permute(0, 2, 3, 1)
    for k, idx in enumerate(indices):
        top, left = tile_origin(k)
        # Left half: the image alone, pixel for pixel (the digit is never under the heatmap).
        assert np.array_equal(logged[-1][top : top + 64, left : left + 64], plain[k].numpy())
        # Right half: its GT box in green.
        x0, y0, x1, y1 = dataset[idx]["box"][0].tolist()
        right = left + 64 + SEPARATOR
        tile = masks[0][top : top + 64, right : right + 64]
        assert tile[y0, x0] and tile[y1, x1]


def test_wrong_predictions_have_red_captions(fitted):
    root, trainer, model = fitted
    panel = next(cb for cb in trainer.callbacks if isinstance(cb, CAMPanel))
    logged = decode(read_events(root / "tb" / "run").Images("cam/cam")[-1])
    pred = panel._probabilities(model, panel._batch["image"]).argmax(1)
    wrong = (pred != panel._batch["label"]).tolist()
    assert 0 < sum(wrong) < len(wrong)  # both kinds present (28% val accuracy)
    for k, is_wrong in enumerate(wrong):
        top, left = tile_origin(k)
        strip = logged[top + 64 : top + 64 + CAPTION_H, left : left + UNIT_W]
        assert red_text(strip) == is_wrong, k


def test_each_method_boxes_at_its_own_threshold(fitted):
    """``box_threshold="val"``: every method's red box at the threshold where *its* MaxBoxAcc
    peaks on the validation images (all 32 here), not at CAM's for all."""
    root, trainer, model = fitted
    panel = next(cb for cb in trainer.callbacks if isinstance(cb, CAMPanel))
    dm = make_data()
    batch = next(iter(torch.utils.data.DataLoader(dm.dataset("val"), batch_size=64)))
    boxes = [b[b[:, 0] >= 0] for b in batch["box"]]
    expected = {}
    for method in METHODS:
        metric = MaxBoxAcc(0.01, (50,), multi_contour=False)
        cams = compute_cam(model, batch["image"], method, targets=batch["label"])
        metric.update(cams_to_scoremaps(cams, (64, 64)), boxes)
        expected[method] = float(metric.compute()["best_threshold@50"])
    assert panel.thresholds == pytest.approx(expected)
    # CAM's own threshold on the whole split is the one ValLocalization logs.
    assert panel.thresholds["cam"] == pytest.approx(
        float(trainer.callback_metrics["val/max_box_acc_threshold"])
    )
    # The logged panels are re-rendered exactly, and their red boxes are those at that method's
    # threshold: a panel with the threshold fixed there draws the same pixels (but the header).
    events = read_events(root / "tb" / "run")
    rendered = panel.render(model)
    for method in METHODS:
        logged = decode(events.Images(f"cam/{method}")[-1])
        assert np.array_equal(rendered[f"cam/{method}"].permute(1, 2, 0).numpy(), logged)
        fixed = CAMPanel(methods=(method,), box_threshold=expected[method])
        fixed._batch = panel._batch
        image = fixed.render(model)[f"cam/{method}"].permute(1, 2, 0).numpy()
        assert np.array_equal(image[HEADER_H:], logged[HEADER_H:]), method


def test_methods_whose_best_thresholds_differ_each_get_their_own(fitted):
    """Built so the two thresholds differ on any machine: each class's CAM weights are shifted by
    the value that centres its CAM on the validation images, so every CAM takes both signs.
    With GAP + linear, Grad-CAM is the ReLU of the same map: it drops the negative part that
    CAM's min-max normalisation keeps, and their best thresholds part by a margin."""
    _, trainer, model = fitted
    fitted_panel = next(cb for cb in trainer.callbacks if isinstance(cb, CAMPanel))
    cal = fitted_panel._calibration
    shifted = copy.deepcopy(model).eval()
    with torch.no_grad():
        feats = shifted.net.forward_with_features(cal["image"])[1].mean((0, 2, 3))  # [C]
        weight = shifted.net.classifier.weight  # [K, C]
        weight -= ((weight @ feats) / feats.sum())[:, None]
    boxes = [b[b[:, 0] >= 0] for b in cal["boxes"]]
    expected = {}
    for method in METHODS:
        metric = MaxBoxAcc(0.01, (50,), multi_contour=False)
        cams = compute_cam(shifted, cal["image"], method, targets=cal["label"])
        assert cams.min() < 0 < cams.max() if method == "cam" else cams.min() >= 0
        metric.update(cams_to_scoremaps(cams, (64, 64)), boxes)
        expected[method] = float(metric.compute()["best_threshold@50"])
    assert abs(expected["gradcam"] - expected["cam"]) >= 0.05, expected

    panel = CAMPanel(methods=METHODS)
    panel._batch, panel._calibration = fitted_panel._batch, cal
    rendered = panel.render(shifted)
    assert panel.thresholds == pytest.approx(expected)
    # CAM's red boxes at its own threshold are not those at Grad-CAM's.
    other = CAMPanel(methods=("cam",), box_threshold=expected["gradcam"])
    other._batch = panel._batch
    red = np.array([255, 0, 0], np.uint8)
    at_other = other.render(shifted)["cam/cam"].permute(1, 2, 0).numpy()
    own = rendered["cam/cam"].permute(1, 2, 0).numpy()
    assert not np.array_equal((at_other == red).all(-1), (own == red).all(-1))


def test_resumed_fit_logs_no_second_untrained_panel(tmp_path):
    """A fit resumed from last.ckpt goes on at the restored step; a second step-0 image would
    read as the untrained network (and make TensorBoard drop the later images as orphans)."""
    dm = make_data()

    def run(max_epochs: int, ckpt_path=None) -> None:
        pl.seed_everything(0)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=max_epochs,
            limit_train_batches=2,
            logger=TensorBoardLogger(tmp_path / "tb", name="run", version=""),
            callbacks=[
                ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True),
                CAMPanel(methods=("cam",), num_images=4, calibration_images=8),
                ValLocalization(),
            ],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(make_model(dm), dm, ckpt_path=ckpt_path)

    run(1)
    first = read_events(tmp_path / "tb" / "run").Images("cam/cam")
    assert [e.step for e in first] == [0, 1]
    run(2, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert len(list((tmp_path / "tb" / "run").glob("events.out.tfevents.*"))) == 2
    events = read_events(tmp_path / "tb" / "run")
    images = events.Images("cam/cam")
    assert [e.step for e in images] == [0, 1, 3]
    assert [e.step for e in images[1:]] == [e.step for e in events.Scalars("val/acc")]
    assert np.array_equal(decode(images[0]), decode(first[0]))  # still the untrained network


def test_every_class_once_before_any_twice_on_the_embedded_digits():
    """The default data: the first 16 validation digits lack a 3; the panel has every digit,
    the first 10 tiles are 0-9 in order."""
    dm = MNISTLocDataModule(num_workers=0)
    dataset = dm.dataset("val")
    labels = dataset.labels
    picked = select_indices(lambda i: int(labels[i]), len(dataset), 16, 10)
    assert 3 not in {int(labels[i]) for i in range(16)}  # why "the first 16" was wrong
    assert [int(labels[i]) for i in picked[:10]] == list(range(10))
    assert len(set(picked)) == 16
    assert max(np.bincount([int(labels[i]) for i in picked])) == 2


def test_select_indices_stratified_and_deterministic():
    labels = [i % 4 for i in range(32)]
    picked = select_indices(lambda i: labels[i], 32, 16, 4)
    assert picked == select_indices(lambda i: labels[i], 32, 16, 4)
    assert len(set(picked)) == 16
    assert [labels[i] for i in picked[:4]] == [0, 1, 2, 3]
    assert np.bincount([labels[i] for i in picked]).tolist() == [4, 4, 4, 4]
    # Sorted by class (as many real val splits are): still every class.
    sorted_labels = sorted(i // 10 for i in range(50))
    picked = select_indices(lambda i: sorted_labels[i], 50, 5, 5)
    assert sorted(sorted_labels[i] for i in picked) == [0, 1, 2, 3, 4]
    # More classes than images: a fixed, even spread of classes, one image each.
    picked = select_indices(lambda i: i % 100, 1000, 16, 100)
    assert [i % 100 for i in picked] == [j * 100 // 16 for j in range(16)]
    # A rare class: topped up with the first unused indices.
    rare = [0] * 30 + [1]
    assert sorted(select_indices(lambda i: rare[i], 31, 6, 2)) == [0, 1, 2, 3, 4, 30]
    assert len(select_indices(lambda i: 0, 3, 16, 4)) == 3


def test_plan_grid_fits_the_card():
    # 84 px digits: 4 x 4 blended tiles, or 2 side-by-side tiles a row, at full size.
    assert plan_grid(16, 84, 84, CAPTION_H) == (4, 1.0)
    assert plan_grid(16, 2 * 84 + SEPARATOR, 84, CAPTION_H) == (2, 1.0)
    assert plan_grid(16, 64, 64, CAPTION_H) == (4, 1.0)  # 5 would fit: square-ish wins
    # 224 px images: scaled down until the grid is no wider than the card.
    cols, scale = plan_grid(16, 224, 224, CAPTION_H)
    assert scale < 1 and cols * int(224 * scale) + (cols + 1) * PADDING <= CARD_WIDTH
    assert plan_grid(16, 224, 224, CAPTION_H, card_width=None) == (4, 1.0)
    assert plan_grid(16, 84, 84, CAPTION_H, ncols=8)[0] == 8


@pytest.mark.parametrize("style", ["overlay", "contour", "side_by_side"])
def test_large_images_fit_a_default_card(style):
    """224 px images in every style: the whole grid within TensorBoard's 350 x 1024 px."""
    dm = ShapesDataModule(image_size=224, train_size=8, val_size=8, test_size=8, num_workers=0)
    model = make_model(dm)
    writer = _Writer()
    panel = CAMPanel(methods=("cam",), num_images=8, style=style, calibration_images=4)
    panel.on_train_start(_fake_trainer(dm, [SimpleNamespace(experiment=writer)]), model)
    ((_, _, shape),) = writer.calls
    assert shape[2] <= CARD_WIDTH and shape[1] <= 1024


def test_styles_keep_the_image_readable():
    dm = make_data()
    model = make_model(dm)
    logger = SimpleNamespace(experiment=_Writer())
    images = {}
    for style in ("overlay", "contour", "side_by_side"):
        panel = CAMPanel(methods=("gradcam",), num_images=4, style=style, box_threshold=0.5)
        panel.on_train_start(_fake_trainer(dm, [logger]), model)
        images[style] = panel.render(model)["cam/gradcam"]
    batch = panel._batch
    plain = denormalize(batch["image"], batch["mean"], batch["std"])
    top, left = HEADER_H + PADDING, PADDING
    contour = images["contour"][:, top : top + 64, left : left + 64]
    blended = images["overlay"][:, top : top + 64, left : left + 64]
    # Contours leave most pixels as they were; the blend changes nearly all of them.
    unchanged = (contour == plain[0]).all(0).float().mean()
    assert unchanged > 0.6 and (blended == plain[0]).all(0).float().mean() < 0.2
    assert not (contour == plain[0]).all()  # some iso-lines are drawn
    side = images["side_by_side"][:, top : top + 64, left : left + 64]
    assert torch.equal(side, plain[0])


class _Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, tuple[int, ...]]] = []

    def add_image(self, tag, image, global_step, dataformats="CHW"):
        assert image.dtype == torch.uint8 and dataformats == "CHW"
        self.calls.append((tag, global_step, tuple(image.shape)))


def _fake_trainer(dm, loggers, epoch=0, rank_zero=True, global_step=0):
    return SimpleNamespace(
        is_global_zero=rank_zero,
        datamodule=dm,
        loggers=loggers,
        sanity_checking=False,
        current_epoch=epoch,
        global_step=global_step,
        ckpt_path=None,
        state=SimpleNamespace(fn="fit"),
        callback_metrics={},
    )


def _model_with_grads(dm):
    torch.manual_seed(0)
    model = make_model(dm)
    model.train()
    model.net.features.backbone.layer1.eval()  # a mixed state must survive too
    batch = next(iter(dm.train_dataloader()))
    torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"]).backward()
    return model


@pytest.mark.parametrize("target", ["predicted", "ground_truth"])
def test_hooks_leave_training_untouched(target):
    dm = make_data()
    model = _model_with_grads(dm)
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()

    writer = _Writer()
    panel = CAMPanel(
        methods=("cam", "gradcam", "gradcam++"), num_images=6, target=target, style="overlay"
    )
    logger = SimpleNamespace(experiment=writer)
    panel.on_train_start(_fake_trainer(dm, [logger]), model)
    with torch.inference_mode():  # as in Lightning's validation loop
        panel.on_validation_end(_fake_trainer(dm, [logger], global_step=4), model)
    panel.on_validation_end(_fake_trainer(dm, [logger], global_step=4), model)  # logged once

    rows = math.ceil(6 / 3)
    assert [(t, s) for t, s, _ in writer.calls] == [
        (f"cam/{m}", step) for step in (0, 4) for m in ("cam", "gradcam", "gradcam++")
    ]
    assert writer.calls[0][2][0] == 3 and writer.calls[0][2][2] == 3 * 64 + 4 * 2
    assert writer.calls[0][2][1] > rows * 64
    assert {name: m.training for name, m in model.named_modules()} == modes
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, grads[name]), name
        assert torch.equal(p, params[name]), name
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), name
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


def test_target_layer_gives_finer_maps():
    dm = make_data()
    model = make_model(dm)
    logger = SimpleNamespace(experiment=_Writer())
    layer1 = "net.features.backbone.layer1"
    default = CAMPanel(methods=("layercam",), num_images=4, box_threshold=0.2)
    fine = CAMPanel(methods=("layercam",), num_images=4, target_layer=layer1, box_threshold=0.2)
    for panel in (default, fine):
        panel.on_train_start(_fake_trainer(dm, [logger]), model)
    coarse_img, fine_img = (p.render(model)["cam/layercam"] for p in (default, fine))
    assert [c[2] for c in logger.experiment.calls] == [tuple(coarse_img.shape)] * 2
    assert coarse_img.shape == fine_img.shape and not torch.equal(coarse_img, fine_img)
    with pytest.raises(CamlabError, match="gradcam"):  # CAM needs the GAP + linear layer
        CAMPanel(methods=("cam",), target_layer=layer1).on_train_start(
            _fake_trainer(dm, [logger]), model
        )


def test_other_ranks_resumed_fits_and_loggers_without_images_do_nothing():
    dm = make_data()
    model = make_model(dm)
    writer = _Writer()
    panel = CAMPanel(num_images=4)
    logger = SimpleNamespace(experiment=writer)
    panel.on_train_start(_fake_trainer(dm, [logger], rank_zero=False), model)
    panel.on_train_start(_fake_trainer(dm, [logger], global_step=8), model)  # resumed
    panel.on_train_start(_fake_trainer(dm, [SimpleNamespace(experiment=object())]), model)
    panel.on_train_start(_fake_trainer(dm, []), model)
    assert writer.calls == [] and panel.indices is None  # nothing even loaded


def test_bad_arguments():
    with pytest.raises(CamlabError):
        CAMPanel(methods=("nope",))
    with pytest.raises(CamlabError):
        CAMPanel(target="top5")
    with pytest.raises(CamlabError):
        CAMPanel(colormap="nope")
    with pytest.raises(CamlabError, match="style"):
        CAMPanel(style="blend")
    with pytest.raises(CamlabError, match="calibration_images"):
        CAMPanel(calibration_images=0)
    for bad in (1.0, -0.1, "best"):
        with pytest.raises(CamlabError, match="box_threshold"):
            CAMPanel(box_threshold=bad)


def test_reference_acol_panel_shows_the_references_evaluation_map():
    """ACoL on the reference's network: the panel's `cam` is the map validation and evaluate.py
    score (the maximum of both branches' min-max normalised maps), not branch A's CAM."""
    import functools

    from camlab.classifier import GAPClassifier

    torch.manual_seed(0)
    model = GAPClassifier(
        backbone="vgg16", num_classes=4, arch="reference", method="acol", image_size=64,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
    ).eval()  # fmt: skip
    batch = next(iter(ShapesDataModule(train_size=8, val_size=4, test_size=4,
                                       num_workers=0).val_dataloader()))  # fmt: skip
    images, labels = batch["image"], batch["label"]
    panel = CAMPanel(methods=("cam", "gradcam"))
    shown = panel._scoremaps(model, images, "cam", labels)
    expected = cams_to_scoremaps(model.evaluation_cam(images, labels).float(), (64, 64))
    assert torch.equal(shown, expected)
    branch_a = cams_to_scoremaps(compute_cam(model, images, "cam", targets=labels), (64, 64))
    assert not torch.allclose(shown, branch_a, atol=1e-3)
    # Grad-CAM has no such map: it explains the CAM layer as before.
    gradcam = cams_to_scoremaps(compute_cam(model, images, "gradcam", targets=labels), (64, 64))
    assert torch.equal(panel._scoremaps(model, images, "gradcam", labels), gradcam)
