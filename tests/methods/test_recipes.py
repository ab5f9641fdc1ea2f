"""The 9 wsolevaluation CAM recipes compose with the reference's hyper-parameters, and build at
224 px with the reference's CAM-layer sizes and learning-rate groups (no data, no download)."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from camlab.instantiate import build

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The reference's settings (clovaai/wsolevaluation main.py arguments; provenance per value in
# README.md, Recipes): --lr (pretrained layers; new ones at 10x), --weight_decay,
# --large_feature_map.
REFERENCE = {
    ("cub", "vgg16"): (1.268269e-05, 5e-4, False),
    ("cub", "inception_v3"): (2.24844746e-03, 5e-4, True),
    ("cub", "resnet50"): (2.3222617e-04, 1e-4, True),
    ("imagenet", "vgg16"): (1.654502e-05, 5e-4, False),
    ("imagenet", "inception_v3"): (3.606503e-04, 5e-4, True),
    ("imagenet", "resnet50"): (3.108411e-05, 1e-4, True),
    ("openimages", "vgg16"): (2.27913316e-03, 5e-4, False),
    ("openimages", "inception_v3"): (3e-04, 5e-4, True),
    ("openimages", "resnet50"): (1.07117324e-03, 1e-4, False),
}
# --epochs, --lr_decay_frequency, the metric the reference reports, the data set's name.
DATA = {
    "cub": (50, 15, "val/max_box_acc_v2", "CUB"),
    "imagenet": (10, 3, "val/max_box_acc_v2", "ILSVRC"),
    "openimages": (10, 3, "val/pxap", "OpenImages"),
}
NUM_CLASSES = {"cub": 200, "imagenet": 1000, "openimages": 100}
ARCHS = ("vgg16", "resnet50", "inception_v3")


def compose_recipe(name: str, *overrides: str):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides])


def reference_lrs(base: float, epochs: int, frequency: int) -> list[float]:
    """The reference's lr of each (0-based) epoch: main.py calls adjust_learning_rate(e + 1)
    before epoch e, which multiplies by 0.1 when e + 1 is a multiple of the frequency."""
    lrs, lr = [], base
    for epoch in range(epochs):
        if (epoch + 1) % frequency == 0:
            lr *= 0.1
        lrs.append(lr)
    return lrs


@pytest.mark.parametrize(("data", "arch"), list(REFERENCE))
def test_recipe_values(data, arch):
    ref_lr, weight_decay, large = REFERENCE[data, arch]
    epochs, frequency, metric, name = DATA[data]
    cfg = compose_recipe(f"wsol_{data}_{arch}_cam")
    assert cfg.method.name == "cam" and cfg.data.name == name and cfg.model.backbone == arch
    assert cfg.trainer.max_epochs == epochs
    assert (cfg.data.batch_size, cfg.data.image_size, cfg.data.resize_size) == (32, 224, 256)
    assert cfg.model.pretrained is True and cfg.model.backbone_lr_mult == 0.1
    opt = cfg.model.optimizer
    assert opt._target_ == "torch.optim.SGD" and opt.momentum == 0.9 and opt.nesterov is True
    assert opt.lr == pytest.approx(10 * ref_lr) and opt.weight_decay == weight_decay
    # The reference's networks (camlab.models.reference) with its large_feature_map.
    assert cfg.model.arch == "reference" and cfg.model.large_feature_map is large
    assert cfg.model.hires_cam is False and not cfg.model.get("head_layers")
    # One threshold grid for the validation metrics and the panel's red-box calibration.
    assert cfg.callbacks.val_localization.cam_curve_interval == 0.001
    assert cfg.callbacks.cam_panel.cam_curve_interval == 0.001
    assert cfg.callbacks.model_checkpoint.monitor is None  # the last epoch is kept
    assert cfg.optimized_metric == metric

    # The schedule gives the reference's lr in every epoch (pretrained and new layers alike).
    params = [torch.nn.Parameter(torch.zeros(1))]
    sgd = torch.optim.SGD([{"params": params, "lr": ref_lr}], lr=ref_lr)
    scheduler = build(cfg.model.scheduler, "scheduler")(optimizer=sgd)
    got = []
    for _ in range(epochs):
        got.append(sgd.param_groups[0]["lr"])
        sgd.step()
        scheduler.step()
    assert got == pytest.approx(reference_lrs(ref_lr, epochs, frequency), rel=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_recipe_models_build_at_224(arch):
    torch.manual_seed(0)
    for data in DATA:
        ref_lr = REFERENCE[data, arch][0]
        cfg = compose_recipe(f"wsol_{data}_{arch}_cam")
        # init_from_checkpoint: pretrained keeps its meaning (backbone_lr_mult applies) but
        # nothing is downloaded; these machines have no internet.
        model = build(
            cfg.model, "model", num_classes=NUM_CLASSES[data], in_channels=3, image_size=224,
            init_from_checkpoint=True, method="cam", method_params={},
        )  # fmt: skip
        groups = {g["name"]: g for g in model.configure_optimizers()["optimizer"].param_groups}
        assert groups["head"]["lr"] == pytest.approx(10 * ref_lr)
        assert groups["backbone"]["lr"] == pytest.approx(ref_lr)
        head_ids = {id(p) for p in groups["head"]["params"]}
        in_head = [n for n, p in model.net.features.backbone.named_parameters()
                   if id(p) in head_ids]  # fmt: skip
        if arch == "resnet50":  # the reference's rule: layer4 (all of it) and fc learn fast
            layer4 = [n for n, _ in model.net.features.backbone.named_parameters()
                      if n.startswith("layer4.")]  # fmt: skip
            assert layer4 and in_head == layer4
        else:  # every torchvision layer it keeps learns at the backbone's rate
            assert in_head == []
        assert id(model.net.classifier.weight) in head_ids
        assert model.net.classifier.out_features == NUM_CLASSES[data]
        assert OmegaConf.to_container(cfg.model.scheduler)["milestones"] == (
            [14, 29, 44] if data == "cub" else [2, 5, 8]
        )
        # The reference's CAM-layer side at 224 px: 28 with large_feature_map, else 14.
        model.eval()
        with torch.no_grad():
            logits, feats = model.net.forward_with_features(torch.randn(1, 3, 224, 224))
        assert logits.shape == (1, NUM_CLASSES[data])
        side = 28 if REFERENCE[data, arch][2] else 14
        assert feats.shape[-2:] == (side, side), (data, arch)


def test_default_grid_is_the_protocols_and_shared():
    from camlab.protocol import CAM_CURVE_INTERVAL

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["cam_curve_interval=0.05"])
        default = compose("train")
    assert default.callbacks.val_localization.cam_curve_interval == CAM_CURVE_INTERVAL == 0.01
    assert default.callbacks.cam_panel.cam_curve_interval == CAM_CURVE_INTERVAL
    assert cfg.callbacks.val_localization.cam_curve_interval == 0.05
    assert cfg.callbacks.cam_panel.cam_curve_interval == 0.05
