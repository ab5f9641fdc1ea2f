"""CAMPanel: panels in TensorBoard, fixed images and GT boxes, no side effects on training."""

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cb_helpers import METHODS, decode, make_data, make_model, read_events

from camlab.callbacks import CAMPanel
from camlab.callbacks.cam_panel import caption, select_indices
from camlab.errors import CamlabError

GREEN = np.array([0, 255, 0], np.uint8)


def test_panels_logged_at_start_and_every_epoch(fitted):
    root, _, _ = fitted
    events = read_events(root / "tb" / "run")
    assert sorted(events.Tags()["images"]) == sorted(f"cam/{m}" for m in METHODS)
    strip = caption(torch.zeros(3, 64, 64, dtype=torch.uint8), ["a", "b"]).shape[1] - 64
    side = 4  # 16 images: 4 x 4 grid, padding 2
    expected_w, expected_h = side * 64 + (side + 1) * 2, side * (64 + strip) + (side + 1) * 2
    for method in METHODS:
        images = events.Images(f"cam/{method}")
        assert [e.step for e in images] == [0, 1, 2]  # untrained net, after epochs 1 and 2
        assert {(e.width, e.height) for e in images} == {(expected_w, expected_h)}
        pixels = [decode(e) for e in images]
        assert pixels[0].shape == (expected_h, expected_w, 3)
        assert not np.array_equal(pixels[0], pixels[2])  # the CAMs changed with training


def test_gt_boxes_identical_across_epochs(fitted):
    root, _, _ = fitted
    events = read_events(root / "tb" / "run")
    masks = [(decode(e) == GREEN).all(-1) for m in METHODS for e in events.Images(f"cam/{m}")]
    assert masks[0].sum() > 16 * 20  # a drawn box in every tile
    for mask in masks[1:]:
        assert np.array_equal(mask, masks[0])
    # Each tile holds its image's GT box: green pixels on the box outline.
    strip = caption(torch.zeros(3, 64, 64, dtype=torch.uint8), ["a", "b"]).shape[1] - 64
    panel = CAMPanel(methods=METHODS)
    dm = make_data()
    dataset = dm.dataset("val")
    indices = select_indices(lambda i: int(dataset[i]["label"]), len(dataset), 16, 4)
    assert panel.num_images == len(indices)
    for k, idx in enumerate(indices):
        x0, y0, x1, y1 = dataset[idx]["box"][0].tolist()
        top = 2 + (k // 4) * (64 + strip + 2)
        left = 2 + (k % 4) * (64 + 2)
        tile = masks[0][top : top + 64, left : left + 64]
        assert tile[y0, x0] and tile[y1, x1]


def test_red_box_at_the_validation_threshold(fitted):
    """The last panel is the final model's CAMs with the box at this epoch's MaxBoxAcc
    threshold (``box_threshold="val"``), drawn after ValLocalization logged it."""
    root, trainer, model = fitted
    panel = next(cb for cb in trainer.callbacks if isinstance(cb, CAMPanel))
    tau = float(trainer.callback_metrics["val/max_box_acc_threshold"])
    assert panel.threshold(trainer) == tau
    events = read_events(root / "tb" / "run")
    logged = {m: decode(events.Images(f"cam/{m}")[-1]) for m in METHODS}
    rendered = panel.render(model, tau)
    for method in METHODS:
        assert np.array_equal(rendered[f"cam/{method}"].permute(1, 2, 0).numpy(), logged[method])
    # The threshold is what moves the red boxes: at 0 every box is the whole image.
    red = np.array([255, 0, 0], np.uint8)
    at_zero = panel.render(model, 0.0)["cam/cam"].permute(1, 2, 0).numpy()
    assert tau > 0
    assert not np.array_equal((at_zero == red).all(-1), (logged["cam"] == red).all(-1))
    assert CAMPanel(box_threshold=0.3).threshold(trainer) == 0.3
    assert CAMPanel().threshold(SimpleNamespace(callback_metrics={})) == 0.2


def test_select_indices_spread_and_deterministic():
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
    # More classes than images: distinct classes; a rare class: topped up.
    assert len({i % 10 for i in select_indices(lambda i: i % 10, 40, 6, 10)}) == 6
    rare = [0] * 30 + [1]
    assert sorted(select_indices(lambda i: rare[i], 31, 6, 2)) == [0, 1, 2, 3, 4, 30]
    assert len(select_indices(lambda i: 0, 3, 16, 4)) == 3


class _Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, tuple[int, ...]]] = []

    def add_image(self, tag, image, global_step, dataformats="CHW"):
        assert image.dtype == torch.uint8 and dataformats == "CHW"
        self.calls.append((tag, global_step, tuple(image.shape)))


def _fake_trainer(dm, loggers, epoch=0, rank_zero=True):
    return SimpleNamespace(
        is_global_zero=rank_zero,
        datamodule=dm,
        loggers=loggers,
        sanity_checking=False,
        current_epoch=epoch,
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
    panel = CAMPanel(methods=("cam", "gradcam", "gradcam++"), num_images=6, target=target)
    logger = SimpleNamespace(experiment=writer)
    panel.on_train_start(_fake_trainer(dm, [logger]), model)
    with torch.inference_mode():  # as in Lightning's validation loop
        panel.on_validation_end(_fake_trainer(dm, [logger], epoch=0), model)
    panel.on_validation_end(_fake_trainer(dm, [logger], epoch=0), model)  # logged once

    rows = math.ceil(6 / 3)
    assert [(t, s) for t, s, _ in writer.calls] == [
        (f"cam/{m}", step) for step in (0, 1) for m in ("cam", "gradcam", "gradcam++")
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
    default = CAMPanel(methods=("layercam",), num_images=4)
    fine = CAMPanel(methods=("layercam",), num_images=4, target_layer=layer1)
    for panel in (default, fine):
        panel.on_train_start(_fake_trainer(dm, [logger]), model)
    coarse_img, fine_img = (p.render(model, 0.2)["cam/layercam"] for p in (default, fine))
    assert [c[2] for c in logger.experiment.calls] == [tuple(coarse_img.shape)] * 2
    assert coarse_img.shape == fine_img.shape and not torch.equal(coarse_img, fine_img)
    with pytest.raises(CamlabError, match="gradcam"):  # CAM needs the GAP + linear layer
        CAMPanel(methods=("cam",), target_layer=layer1).on_train_start(
            _fake_trainer(dm, [logger]), model
        )


def test_other_ranks_and_loggers_without_images_do_nothing():
    dm = make_data()
    model = make_model(dm)
    writer = _Writer()
    panel = CAMPanel(num_images=4)
    panel.on_train_start(
        _fake_trainer(dm, [SimpleNamespace(experiment=writer)], rank_zero=False), model
    )
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
    for bad in (1.0, -0.1, "best"):
        with pytest.raises(CamlabError, match="box_threshold"):
            CAMPanel(box_threshold=bad)
