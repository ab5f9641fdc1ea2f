"""The `method` config group carries the reference's defaults, bad choices fail in one
paragraph, and a checkpoint of every method loads with GAPClassifier.load_from_checkpoint alone."""

import functools
import inspect
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from camlab.classifier import GAPClassifier
from camlab.errors import CamlabError
from camlab.methods import WSOL_METHODS, build_method
from camlab.models import build_gapnet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# clovaai/wsolevaluation config.py defaults.
REFERENCE_DEFAULTS = {
    "cam": {},
    "has": {"grid_size": 4, "drop_rate": 0.5},
    "acol": {"threshold": 0.7},
    "spg": {"threshold_1h": 0.7, "threshold_1l": 0.01, "threshold_2h": 0.5,
            "threshold_2l": 0.05, "threshold_3h": 0.7, "threshold_3l": 0.1},
    "adl": {"drop_rate": 0.75, "threshold": 0.9},
    "cutmix": {"beta": 1.0, "prob": 1.0},
}  # fmt: skip
NOT_HYPERPARAMETERS = ("self", "net", "backbone", "num_classes")


def test_config_group_defaults_are_the_references():
    assert set(WSOL_METHODS) == set(REFERENCE_DEFAULTS)
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        assert compose("train").method.name == "cam"  # the default: plain training
        for name, defaults in REFERENCE_DEFAULTS.items():
            node = OmegaConf.to_container(compose("train", overrides=[f"method={name}"]).method)
            assert node.pop("name") == name and node == defaults
            # and every class's own defaults agree with its config file (built without them)
            params = inspect.signature(WSOL_METHODS[name].__init__).parameters
            own = {k: p.default for k, p in params.items() if k not in NOT_HYPERPARAMETERS}
            assert own == defaults, name
            method = build_method(name, build_gapnet("resnet18", 2), "resnet18", 2)
            assert type(method) is WSOL_METHODS[name]
            if name == "spg":  # held as (high, low) pairs, in the config's order
                assert [v for pair in method.thresholds for v in pair] == list(defaults.values())
                continue
            for key, value in defaults.items():  # the instance holds them too
                held = [getattr(m, key) for m in (method, *method.modules()) if hasattr(m, key)]
                assert held and all(v == value for v in held), (name, key, held)


def test_bad_method_settings_are_one_paragraph():
    net = build_gapnet("resnet18", 2)
    with pytest.raises(CamlabError, match="Unknown method 'gradcam'. Valid choices: cam, has"):
        build_method("gradcam", net, "resnet18", 2)
    with pytest.raises(CamlabError, match="method=has .*configs/method/has.yaml"):
        build_method("has", net, "resnet18", 2, drop_rate=2.0)
    with pytest.raises(CamlabError, match="method=acol"):
        build_method("acol", net, "resnet18", 2, treshold=0.5)  # a typo'd name


def batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(4, 1, 32, 32, generator=g), "label": torch.tensor([0, 1, 2, 0])}
            for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize("method", ["has", "acol", "spg", "adl", "cutmix"])
def test_checkpoint_loads_alone_with_the_method_and_evaluates_as_the_plain_network(
    tmp_path, method
):
    torch.manual_seed(0)
    params = {"acol": {"threshold": 0.6}, "adl": {"drop_rate": 0.5}}.get(method, {})
    model = GAPClassifier(
        backbone="resnet18", num_classes=3, in_channels=1, hires_cam=True, image_size=32,
        optimizer=functools.partial(torch.optim.SGD, lr=0.05), method=method,
        method_params=params,
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches(), batch_size=None))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)

    # Plain values only: the file reads with weights_only=True (what load_from_checkpoint uses).
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hparams["method"] == method and hparams["method_params"] == params
    loaded = GAPClassifier.load_from_checkpoint(str(path)).eval()
    assert type(loaded.wsol_method) is WSOL_METHODS[method]
    state, got = model.state_dict(), loaded.state_dict()
    assert state.keys() == got.keys() and all(torch.equal(state[k], got[k]) for k in state)
    if method == "acol":
        assert loaded.wsol_method.threshold == 0.6 and "wsol_method.classifier_b.weight" in got

    # At eval time the model is its GAP network: a plain (method=cam) model with the same
    # network weights gives the same logits and CAM-layer features.
    plain = GAPClassifier(backbone="resnet18", num_classes=3, in_channels=1, hires_cam=True)
    plain.net.load_state_dict(loaded.net.state_dict())
    plain.eval()
    images = batches(1)[0]["image"]
    with torch.no_grad():
        a, b = loaded.net.forward_with_features(images), plain.net.forward_with_features(images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert loaded.cam_layer == "net.features" and loaded.gap_classifier is loaded.net.classifier
