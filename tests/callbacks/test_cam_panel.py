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
from camlab.callbacks.panel_layout import (
    CARD_HEIGHT,
    CARD_WIDTH,
    MIN_TILE,
    PADDING,
    SEPARATOR,
    card_tags,
    plan_cards,
    plan_grid,
    resize,
    scale_boxes,
    text_strip,
)
from camlab.cam import compute_cam
from camlab.cam.overlay import denormalize
from camlab.data import ShapesDataModule
from camlab.data.mnist import MNISTLocDataModule
from camlab.errors import CamlabError
from camlab.metrics import MaxBoxAcc, cams_to_scoremaps

GREEN = np.array([0, 255, 0], np.uint8)
CAPTION_H = text_strip(8, ["a", "b"]).shape[1]
HEADER_H = text_strip(8, ["a"]).shape[1]
# The default panel of 16 side-by-side tiles of 64 px images, on cards of at most 350 x 215 px
# (TensorBoard's IMAGES card width, the image height of a TIME SERIES card): 3 cards of 6 tiles
# (3 a row, 2 rows), the images scaled to 56 px, each card padded to 350 x 215 px. Written out,
# not derived from plan_cards.
TILE, PER_CARD, COLS = 56, 6, 3
UNIT_W = 2 * TILE + SEPARATOR  # side-by-side tile
GRID_W = COLS * UNIT_W + (COLS + 1) * PADDING
GRID_H = HEADER_H + 2 * (TILE + CAPTION_H) + 3 * PADDING
SCALE = plan_cards(16, 2 * 64 + SEPARATOR, 64, CAPTION_H, HEADER_H)[2]  # the boxes' scale


def card_tags_of(method: str) -> list[str]:
    """The default panel's card tags of ``method``, in tile order."""
    return [f"cam/{method}/{tiles}" for tiles in ("01-06", "07-12", "13-16")]


def tile_origin(k: int) -> tuple[int, int, int]:
    """Card index and top-left pixel (row, column) of tile ``k`` of the default panel."""
    card, j = divmod(k, PER_CARD)
    top = HEADER_H + PADDING + (j // COLS) * (TILE + CAPTION_H + PADDING)
    return card, top, PADDING + (j % COLS) * (UNIT_W + PADDING)


def stacked(panels: dict, method: str) -> np.ndarray:
    """A rendered default panel's cards of ``method``, one under the other, ``[H, W, 3]``."""
    return np.concatenate([panels[t].permute(1, 2, 0).numpy() for t in card_tags_of(method)])


def red_text(region: np.ndarray) -> bool:
    r, g, b = (region[..., i].astype(int) for i in range(3))
    return bool(((r > 150) & (g < 110) & (b < 110)).any())


def test_panels_share_the_step_axis_of_the_scalars(fitted):
    """Image cards and charts on one axis: step 0 before training, then exactly the steps of
    the validation scalars (not the epoch number)."""
    root, _, _ = fitted
    events = read_events(root / "tb" / "run")
    tags = [t for m in METHODS for t in card_tags_of(m)]
    assert sorted(events.Tags()["images"]) == sorted(tags)
    scalar_steps = [e.step for e in events.Scalars("val/acc")]
    assert scalar_steps == [3, 7]  # 4 batches per epoch
    assert [e.step for e in events.Scalars("val/max_box_acc_v2")] == scalar_steps
    # Every card is 350 x 215 px, as TensorBoard scales it (the IMAGES card's width, a TIME
    # SERIES card's image height), so both show it 1:1: read where TensorBoard opens, no click.
    assert (GRID_W, GRID_H) == (350, 204) and (CARD_WIDTH, CARD_HEIGHT) == (350, 215)
    assert max(CARD_WIDTH, CARD_HEIGHT) <= 1000 and 1.5 < CARD_WIDTH / CARD_HEIGHT < 2
    for tag in tags:
        images = events.Images(tag)
        assert [e.step for e in images] == [0, *scalar_steps]
        assert {(e.width, e.height) for e in images} == {(CARD_WIDTH, CARD_HEIGHT)}
        pixels = [decode(e) for e in images]
        assert not np.array_equal(pixels[0], pixels[-1])  # the CAMs changed with training
        assert (pixels[-1][GRID_H:] == 0).all()  # the padding under the grid is black
        assert (pixels[-1][GRID_H - PADDING - CAPTION_H : GRID_H - PADDING] > 0).any()


def test_gt_boxes_identical_across_epochs_and_left_half_is_the_plain_image(fitted):
    root, _, model = fitted
    events = read_events(root / "tb" / "run")
    # Per card: every method's image at every step.
    logged = [
        [decode(e) for m in METHODS for e in events.Images(card_tags_of(m)[card])]
        for card in range(3)
    ]
    masks = [[(p == GREEN).all(-1) for p in images] for images in logged]
    assert sum(card[0].sum() for card in masks) > 16 * 15  # a drawn box in every tile
    for card in masks:
        for mask in card[1:]:
            assert np.array_equal(mask, card[0])
    dataset = make_data().dataset("val")
    indices = select_indices(lambda i: int(dataset[i]["label"]), len(dataset), 16, 4)
    plain = denormalize(
        torch.stack([dataset[i]["image"] for i in indices]), model.hparams.mean, model.hparams.std
    )
    assert int(64 * SCALE) == TILE
    small = resize(plain, (TILE, TILE)).permute(0, 2, 3, 1)
    for k, idx in enumerate(indices):
        card, top, left = tile_origin(k)
        # Left half: the image alone, pixel for pixel at the tile size (never under the heatmap).
        assert np.array_equal(logged[card][-1][top : top + TILE, left : left + TILE], small[k])
        # Right half: its GT box in green.
        x0, y0, x1, y1 = scale_boxes(dataset[idx]["box"][:1], SCALE)[0].tolist()
        right = left + TILE + SEPARATOR
        tile = masks[card][0][top : top + TILE, right : right + TILE]
        assert tile[y0, x0] and tile[y1, x1]


def test_wrong_predictions_have_red_captions(fitted):
    root, trainer, model = fitted
    panel = next(cb for cb in trainer.callbacks if isinstance(cb, CAMPanel))
    events = read_events(root / "tb" / "run")
    logged = [decode(events.Images(tag)[-1]) for tag in card_tags_of("cam")]
    pred = panel._probabilities(model, panel._batch["image"]).argmax(1)
    wrong = (pred != panel._batch["label"]).tolist()
    assert 0 < sum(wrong) < len(wrong)  # both kinds present (28% val accuracy)
    for k, is_wrong in enumerate(wrong):
        card, top, left = tile_origin(k)
        strip = logged[card][top + TILE : top + TILE + CAPTION_H, left : left + UNIT_W]
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
    assert list(rendered) == [t for m in METHODS for t in card_tags_of(m)]
    for method in METHODS:
        fixed = CAMPanel(methods=(method,), box_threshold=expected[method])
        fixed._batch = panel._batch
        at_fixed = fixed.render(model)
        for tag in card_tags_of(method):
            logged = decode(events.Images(tag)[-1])
            assert np.array_equal(rendered[tag].permute(1, 2, 0).numpy(), logged)
            image = at_fixed[tag].permute(1, 2, 0).numpy()
            assert np.array_equal(image[HEADER_H:], logged[HEADER_H:]), tag


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
    at_other = stacked(other.render(shifted), "cam")
    own = stacked(rendered, "cam")
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


def test_plan_cards_fit_a_time_series_card():
    """The default, 16 side-by-side 84 px digits: 3 cards of 3 x 2 tiles at 56 px, 350 x 204
    px: the IMAGES card's width and under the 215 px of a TIME SERIES card's image, so both
    show every card 1:1 (16 tiles on one card would show at a third of their size there)."""
    side = 2 * 84 + SEPARATOR
    per_card, cols, scale = plan_cards(16, side, 84, CAPTION_H, HEADER_H)
    tile, rows = int(84 * scale), math.ceil(per_card / cols)
    assert (per_card, cols, rows, tile) == (6, 3, 2, 56)
    width = cols * (2 * tile + SEPARATOR) + (cols + 1) * PADDING
    height = HEADER_H + rows * (tile + CAPTION_H) + (rows + 1) * PADDING
    assert (width, height) == (350, 204) and (CARD_WIDTH, CARD_HEIGHT) == (350, 215)
    assert card_tags("cam/cam", 16, per_card) == ["cam/cam/01-06", "cam/cam/07-12", "cam/cam/13-16"]
    # Blended tiles: 2 cards of 4 x 2 at 61 px, evenly filled (8 + 8, not 12 + 4).
    assert plan_cards(16, 84, 84, CAPTION_H, HEADER_H)[:2] == (8, 4)
    assert int(84 * plan_cards(16, 84, 84, CAPTION_H, HEADER_H)[2]) == 61
    # Few tiles: one card, tagged by the method alone.
    assert plan_cards(4, side, 84, CAPTION_H, HEADER_H)[:2] == (4, 2)
    assert card_tags("cam/cam", 4, 4) == ["cam/cam"]
    assert card_tags("cam/x", 100, 30)[-1] == "cam/x/091-100"
    # 224 px images: no smaller than MIN_TILE either, 6 a card.
    per_card, cols, scale = plan_cards(16, 2 * 224 + SEPARATOR, 224, CAPTION_H, HEADER_H)
    assert (per_card, cols) == (6, 3) and int(224 * scale) >= MIN_TILE
    # No height limit, or fixed columns: one card (the IMAGES-tab-only layout, 2 x 8 at 1:1).
    assert plan_cards(16, side, 84, CAPTION_H, HEADER_H, card_height=None) == (16, 2, 1.0)
    assert plan_cards(16, side, 84, CAPTION_H, HEADER_H, ncols=4)[:2] == (16, 4)


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
    """224 px images in every style: each card within 350 x 215 px, the tiles on as few cards
    as keeps them at least MIN_TILE px (8 blended tiles: one card; side by side: two)."""
    dm = ShapesDataModule(image_size=224, train_size=8, val_size=8, test_size=8, num_workers=0)
    model = make_model(dm)
    writer = _Writer()
    panel = CAMPanel(methods=("cam",), num_images=8, style=style, calibration_images=4)
    panel.on_train_start(_fake_trainer(dm, [SimpleNamespace(experiment=writer)]), model)
    expected = ["cam/cam/1-4", "cam/cam/5-8"] if style == "side_by_side" else ["cam/cam"]
    assert [tag for tag, _, _ in writer.calls] == expected
    for _, _, shape in writer.calls:
        assert shape == (3, CARD_HEIGHT, CARD_WIDTH)


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
    # 4 blended tiles: one row at 64 px; side by side: 2 x 2 at 61 px (the card's 215 px); all
    # padded to the card with black.
    assert {tuple(image.shape) for image in images.values()} == {(3, CARD_HEIGHT, CARD_WIDTH)}
    assert (images["overlay"][:, :, 4 * 64 + 5 * PADDING :] == 0).all()
    assert (images["side_by_side"][:, :, 2 * (2 * 61 + SEPARATOR) + 3 * PADDING :] == 0).all()
    contour = images["contour"][:, top : top + 64, left : left + 64]
    blended = images["overlay"][:, top : top + 64, left : left + 64]
    # Contours leave most pixels as they were; the blend changes nearly all of them.
    unchanged = (contour == plain[0]).all(0).float().mean()
    assert unchanged > 0.6 and (blended == plain[0]).all(0).float().mean() < 0.2
    assert not (contour == plain[0]).all()  # some iso-lines are drawn
    side = images["side_by_side"][:, top : top + 61, left : left + 61]
    assert torch.equal(side, resize(plain, (61, 61))[0])


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
    # 6 blended 64 px tiles: one card (3 x 2 at 61 px), padded to 350 x 215 px.
    assert writer.calls[0][2] == (3, CARD_HEIGHT, CARD_WIDTH) and rows == 2
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
