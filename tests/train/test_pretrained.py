"""Pretrained backbones offline: torchvision's weight files are put in a TORCH_HOME of the
test's own (random weights under the real file names; torchvision loads a cached file as is)."""

import functools
import os
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import FAST, compose_train

from camlab.checkpoint_io import read_checkpoint
from camlab.classifier import GAPClassifier
from camlab.models.backbones import build_gapnet
from camlab.train import train


def cache_weights(torch_home: Path, name: str, **kwargs) -> Path:
    """Writes random weights of torchvision's ``name`` where its DEFAULT weights are cached."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = torch_home / "hub" / "checkpoints" / os.path.basename(weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    torch.save(model.state_dict(), path)
    return path


def test_pretrained_inception_keeps_transform_input(tmp_path, monkeypatch):
    cache_weights(tmp_path, "inception_v3", aux_logits=True, init_weights=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = build_gapnet("inception_v3", 10, pretrained=True).eval()
    reference = torchvision.models.inception_v3(
        weights=torchvision.models.Inception_V3_Weights.DEFAULT
    ).eval()
    assert reference.transform_input  # what torchvision sets for Google's weights
    captured = {}
    reference.Mixed_7c.register_forward_hook(lambda m, i, out: captured.update(out=out))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        reference(x)
        ours = net.forward_features(x)
    # The whole torchvision forward (its input remap included) up to the CAM layer.
    torch.testing.assert_close(ours, captured["out"], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_resume_pretrained_offline_and_reload_keeps_backbone_lr(tmp_path, monkeypatch):
    with_weights, empty = tmp_path / "home", tmp_path / "empty_home"
    cache_weights(with_weights, "resnet18")
    empty.mkdir()
    common = [*FAST, "model=resnet18", "model.pretrained=true", "model.optimizer.lr=0.002",
              "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
              "~callbacks.rich_progress_bar", "~callbacks.cam_panel"]  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(with_weights))  # torch.hub reads it at every call
    train(compose_train(tmp_path / "first", *common, "trainer.max_epochs=1", fast=()))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"

    # Offline, with no cached weights: the checkpoint has them, nothing is fetched.
    monkeypatch.setenv("TORCH_HOME", str(empty))
    resumed = compose_train(
        tmp_path / "second", *common, "trainer.max_epochs=2", f"ckpt_path={last}", fast=()
    )
    train(resumed)
    assert not any(empty.rglob("*")), "weights were fetched again"
    assert read_checkpoint(str(tmp_path / "second" / "checkpoints" / "last.ckpt"))["epoch"] == 1

    # Reloaded alone (still offline), the model still knows it is an ImageNet backbone.
    monkeypatch.setenv("TORCH_HOME", str(empty))
    model = GAPClassifier.load_from_checkpoint(
        last, optimizer=functools.partial(torch.optim.AdamW, lr=0.002)
    )
    assert model.hparams.pretrained and model.hparams.backbone_lr_mult == 0.1
    groups = {g["name"]: g["lr"] for g in model.configure_optimizers().param_groups}
    assert groups == {"head": 0.002, "backbone": pytest.approx(0.0002)}
