"""scripts/cam_image.py end to end, offline."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import cv2
import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cam_image.py"


def _script():
    spec = importlib.util.spec_from_file_location("cam_image", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def image_file(tmp_path) -> Path:
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return path


def test_torchvision_model_end_to_end(image_file, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), str(image_file), "--arch", "resnet18", "--no-pretrained",
           "--size", "64", "--topk", "2", "--method", "gradcam++", "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    written = sorted(out.glob("*.png"))
    assert len(written) == 2 and [p.name.split("_top")[1][0] for p in written] == ["1", "2"]
    assert all(p.name.startswith("img_gradcampp_top") for p in written)
    tile = cv2.imread(str(written[0]))
    assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8


def test_checkpoint_of_ours(image_file, tmp_path):
    import pytorch_lightning as pl

    from camlab.classifier import GAPClassifier

    model = GAPClassifier(
        backbone="resnet18", num_classes=3, in_channels=1, class_names=["a", "b", "c"]
    )
    ckpt = tmp_path / "m.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": pl.__version__,
        },
        ckpt,
    )
    out = tmp_path / "out"
    argv = [str(image_file), "--checkpoint", str(ckpt), "--method", "cam", "--topk", "3",
            "--size", "48", "--out", str(out)]  # fmt: skip
    assert _script().main(argv) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 3 and {n.rsplit("_", 1)[1] for n in names} == {"a.png", "b.png", "c.png"}


def test_clear_errors(image_file, tmp_path, capsys):
    script = _script()
    argv = [str(image_file), "--arch", "resnet18", "--no-pretrained", "--size", "32"]
    assert script.main([*argv, "--topk", "1001", "--out", str(tmp_path)]) == 2
    assert "1..1000" in capsys.readouterr().err
    assert script.main([*argv, "--layer", "layer9", "--out", str(tmp_path)]) == 2
    assert "Candidate layer names" in capsys.readouterr().err
    assert script.main([str(tmp_path / "missing.png"), *argv[1:]]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_offline_pretrained_names_cache_path(image_file, monkeypatch, capsys):
    script = _script()

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(script.torchvision.models, "get_model", offline)
    assert script.main([str(image_file), "--arch", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and "checkpoints" in err and "--no-pretrained" in err
