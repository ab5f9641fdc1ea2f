"""timm backbones (``model=timm model.name=<name>``): small models with random weights, 32-48 px.

Each model trains a few steps with Lightning, then: CAM at the declared layer is the GAP +
linear identity, Grad-CAM agrees with pytorch-grad-cam on the same model, and the checkpoint
rebuilds the same network alone. Nothing downloads: pretrained loading is checked offline.
"""

from functools import partial
from pathlib import Path

import pytest
import pytorch_grad_cam as pgc
import pytorch_lightning as pl
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch.utils.data import DataLoader, Dataset

from camlab.cam import (
    cam_from_features,
    compute_cam,
    default_cam_layer,
    minmax_normalize,
    resize_maps,
)
from camlab.classifier import GAPClassifier
from camlab.errors import CamlabError
from camlab.instantiate import build
from camlab.models.timm_backbones import TimmFeatures, build_timm_gapnet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SIZE = 64  # CNNs: 2x2 maps (stride 32); ViT: 4x4 patches


class _Shapes(Dataset):
    """Class k: a bright square in one of 3 fixed places on noise (learnable in a few steps)."""

    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(n) % 3
        self.images = torch.randn(n, 1, SIZE, SIZE, generator=g) * 0.3
        for i, k in enumerate(self.labels.tolist()):
            self.images[i, :, 16 * k : 16 * k + 24, 16 * k : 16 * k + 24] += 2.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}


def _trained(name: str, tmp_path) -> tuple[GAPClassifier, pl.Trainer, dict[str, torch.Tensor]]:
    pl.seed_everything(0, verbose=False)
    model = GAPClassifier(
        name, num_classes=3, in_channels=1, arch="timm", image_size=SIZE,
        optimizer=partial(torch.optim.AdamW, lr=1e-3),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=4, default_root_dir=tmp_path, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit(model, DataLoader(_Shapes(), batch_size=6))
    return model.eval(), trainer, before


def _peer_gradcam(model, layer, x, targets, reshape=None) -> torch.Tensor:
    with pgc.GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as peer:
        out = peer(x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return torch.from_numpy(out)


@pytest.mark.parametrize(
    ("name", "channels", "grid"),
    [("resnet10t", 512, 2), ("convnext_atto", 320, 2), ("vit_tiny_patch16_224", 192, 4)],
)
def test_train_cam_gradcam_and_checkpoint(name, channels, grid, tmp_path):
    model, trainer, before = _trained(name, tmp_path)
    loss = float(trainer.callback_metrics["train/loss"])
    assert 0.0 < loss < 5.0  # finite, from 4 real steps (3 classes: ln 3 = 1.1 at chance)
    # Every weight got a gradient and an update (AdamW skips those without): timm's unused head
    # layers are gone, which DDP needs, and the backbone trains with the new head.
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged and len(before) > 40
    assert model.hparams.backbone == name and model.hparams.arch == "timm"
    assert isinstance(model.net.features.backbone, TimmFeatures)
    # Only the new linear layer is a classifier: timm's own head is gone, its norm moved.
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert "net.classifier" in linears and not any(".head" in n for n in linears)

    x = _Shapes(6).images + 0.1 * torch.randn(6, 1, SIZE, SIZE, generator=torch.Generator())
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        logits, feats = model.net.forward_with_features(x)
    assert feats.shape == (6, channels, grid, grid) and default_cam_layer(model) == "net.features"
    # CAM: the identity of a GAP + linear head (mean over positions + bias = the logits).
    w, b = model.gap_classifier.weight, model.gap_classifier.bias
    cams = compute_cam(model, x, "cam", targets=targets)
    torch.testing.assert_close(cams, cam_from_features(feats, w, targets), rtol=1e-5, atol=1e-5)
    every = cam_from_features(feats, w, targets=torch.arange(3).expand(6, 3))
    torch.testing.assert_close(every.mean((2, 3)) + b, logits, rtol=1e-5, atol=1e-5)

    # Grad-CAM by backward passes == pytorch-grad-cam's (ReLU, min-max, resized to the input).
    ours = compute_cam(model, x, "gradcam", targets=targets, closed_form=False)
    theirs = _peer_gradcam(model, model.net.features, x, targets)
    torch.testing.assert_close(minmax_normalize(resize_maps(ours, SIZE)), theirs,
                               rtol=1e-3, atol=1e-3)  # fmt: skip
    assert float(theirs.std()) > 0.05  # a real map, not a constant

    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = GAPClassifier.load_from_checkpoint(str(path)).eval()
    assert loaded.hparams.backbone == name and loaded.hparams.arch == "timm"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), logits, rtol=0, atol=0)


def test_vit_inner_block_tokens_match_pytorch_grad_cam(tmp_path):
    # A layer inside timm's ViT outputs tokens [B, 1 + h*w, C]: camlab.cam.tokens reshapes them
    # as pytorch-grad-cam's reshape_transform does (class token dropped, patches row by row).
    net = build_timm_gapnet("vit_tiny_patch16_224", 3, image_size=48)
    with torch.no_grad():
        net.classifier.weight.mul_(100.0)  # clear gradients at a random start
    net.eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([1, 2])
    layer = net.features.backbone.model.blocks[-1]
    ours = compute_cam(net, x, "gradcam", targets, "features.backbone.model.blocks.11")

    def grid(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].reshape(t.shape[0], 3, 3, t.shape[2]).permute(0, 3, 1, 2)

    theirs = _peer_gradcam(net, layer, x, targets, grid)
    torch.testing.assert_close(minmax_normalize(resize_maps(ours, 48)), theirs,
                               rtol=1e-3, atol=1e-3)  # fmt: skip
    assert float(theirs.std()) > 0.05  # a real map, not a constant


def test_deit_distillation_token_and_plain_timm_models():
    # DeiT (distilled): two prefix tokens dropped from the grid.
    net = build_timm_gapnet("deit_tiny_distilled_patch16_224", 3, image_size=48).eval()
    model = net.features.backbone.model
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = model.forward_features(x)
        expected = tokens[:, 2:].transpose(1, 2).reshape(2, 192, 3, 3)
        torch.testing.assert_close(net.forward_features(x), expected, rtol=0, atol=0)
    # A plain timm Swin (not wrapped): its `norm` feeds GAP + linear, found automatically.
    torch.manual_seed(0)
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=32, embed_dim=16, depths=(1, 1),
        num_heads=(1, 1), window_size=4, num_classes=4,
    ).eval()  # fmt: skip
    assert default_cam_layer(swin) == "norm"
    targets = torch.tensor([0, 3])
    cams = compute_cam(swin, x[:, :, :32, :32], "cam", targets)  # needs the verified head
    with torch.no_grad():
        feats = swin.forward_features(x[:, :, :32, :32]).permute(0, 3, 1, 2)
    torch.testing.assert_close(cams, cam_from_features(feats, swin.head.fc.weight, targets))
    ours = compute_cam(swin, x[:, :, :32, :32], "gradcam", targets, closed_form=False)
    theirs = _peer_gradcam(swin, swin.norm, x[:, :, :32, :32], targets,
                           lambda t: t.permute(0, 3, 1, 2))  # fmt: skip
    torch.testing.assert_close(minmax_normalize(resize_maps(ours, 32)), theirs,
                               rtol=1e-3, atol=1e-3)  # fmt: skip


def test_pretrained_offline_names_cache_and_fix(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # Offline mode and an empty cache: the Hub download fails at once, online or not.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CamlabError) as err:
        GAPClassifier("resnet10t", 3, arch="timm", pretrained=True)
    msg = str(err.value)
    assert "timm/resnet10t" in msg and str(tmp_path / "hub") in msg
    assert "model.pretrained=false" in msg and "\n" not in msg
    # A checkpoint holds its weights: building it never downloads (init_from_checkpoint).
    model = GAPClassifier("resnet10t", 3, arch="timm", pretrained=True, init_from_checkpoint=True)
    assert model.hparams.pretrained is True


def test_unknown_name_and_wrong_options():
    with pytest.raises(CamlabError, match=r"timm\.list_models\('\*resnet\*'\)") as err:
        GAPClassifier("resnet19x", 3, arch="timm")
    assert "resnet18" in str(err.value)  # a close name
    with pytest.raises(CamlabError, match="hires_cam"):
        GAPClassifier("resnet10t", 3, arch="timm", hires_cam=True)
    with pytest.raises(CamlabError, match="Images of 8 px do not fit timm model"):
        GAPClassifier("vit_tiny_patch16_224", 3, arch="timm", image_size=8)  # 16 px patches


def test_config_builds_the_named_model(tmp_path):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["model=timm", "model.name=resnet10t"])
        bad = compose("train", overrides=["model=timm", "model.backbone=resnet50"])
    assert cfg.model.backbone == "resnet10t" and cfg.model.arch == "timm"
    model = instantiate(cfg.model, num_classes=4, in_channels=1, image_size=32, _convert_="all")
    assert isinstance(model, GAPClassifier) and model.hparams.backbone == "resnet10t"
    assert model.net.classifier.out_features == 4
    with pytest.raises(CamlabError, match="model.name=<name> only"):
        build(bad.model, "model", num_classes=4)
