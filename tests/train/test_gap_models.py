import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from camlab.cam import cam_from_features
from camlab.classifier import GAPClassifier
from camlab.data import MNISTLocDataModule
from camlab.errors import CamlabError
from camlab.models import BACKBONES, build_gapnet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODEL_CONFIGS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))


def test_every_backbone_has_a_config():
    # timm.yaml: any timm model (model.name), tests/models/test_timm.py
    assert set(MODEL_CONFIGS) == set(BACKBONES) | {"timm"}


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_config_composes_and_trains_one_step(name, tmp_path):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", f"paths.output_dir={tmp_path}"])
    dm = MNISTLocDataModule(canvas_size=80, batch_size=4, num_workers=0)  # inception needs 75+
    model = instantiate(cfg.model, num_classes=10, in_channels=1, _convert_="all")
    backbone = cfg.model.name if name == "timm" else name
    assert isinstance(model, GAPClassifier) and model.hparams.backbone == backbone
    trainer = pl.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/acc" in trainer.callback_metrics
    feats = model.net.eval().forward_features(torch.zeros(1, 1, 80, 80))
    assert feats.shape[1] == model.gap_classifier.in_features


def test_gap_head_is_mean_then_linear():
    net = build_gapnet("resnet18", 5, in_channels=1).eval()
    x = torch.randn(2, 1, 64, 64)
    logits, feats = net.forward_with_features(x)
    expected = feats.mean((2, 3)) @ net.classifier.weight.T + net.classifier.bias
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # CAM averaged over space plus bias gives the logits back
    every_class = torch.arange(5).expand(len(x), 5)  # [B, K] targets: [B, K, h, w] maps
    cams = cam_from_features(feats, net.classifier.weight, targets=every_class)
    torch.testing.assert_close(
        cams.mean((2, 3)) + net.classifier.bias, logits, rtol=1e-5, atol=1e-5
    )


def test_hires_cam_doubles_resnet_feature_maps():
    x = torch.randn(1, 3, 64, 64)
    for name in ("resnet18", "resnet50"):
        lo = build_gapnet(name, 3).forward_features(x).shape[-1]
        hi = build_gapnet(name, 3, hires_cam=True).forward_features(x).shape[-1]
        assert (lo, hi) == (2, 4)
    with pytest.raises(CamlabError, match="ResNet option"):
        build_gapnet("vgg16", 3, hires_cam=True)


def test_unknown_backbone_lists_choices():
    with pytest.raises(CamlabError, match="resnet18") as err:
        build_gapnet("resnet19", 3)
    assert "Valid choices" in str(err.value)


def test_pretrained_weights_from_cache_and_grayscale_adaptation(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18()
    ckpt_dir = tmp_path / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(reference.state_dict(), ckpt_dir / os.path.basename(weights.url))

    rgb = build_gapnet("resnet18", 10, in_channels=3, pretrained=True)
    torch.testing.assert_close(rgb.features.backbone.layer4[1].conv2.weight,
                               reference.layer4[1].conv2.weight)  # fmt: skip
    gray = build_gapnet("resnet18", 10, in_channels=1, pretrained=True).eval()
    rgb.eval()
    x = torch.rand(2, 1, 64, 64)
    # a gray image through the adapted conv == the same image replicated to RGB
    torch.testing.assert_close(gray.forward_features(x), rgb.forward_features(x.repeat(1, 3, 1, 1)),
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_pretrained_offline_names_cache_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # Make the download fail fast and deterministically, online or not.
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(CamlabError) as err:
        build_gapnet("mobilenet_v2", 10, pretrained=True)
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints") in msg and "model.pretrained=false" in msg


def test_pretrained_backbone_gets_lower_learning_rate():
    from functools import partial

    model = GAPClassifier("resnet18", 3, optimizer=partial(torch.optim.AdamW, lr=1e-3))
    model.hparams.pretrained = True  # as if built from ImageNet weights
    opt = model.configure_optimizers()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"head": 1e-3, "backbone": pytest.approx(1e-4)}
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))
