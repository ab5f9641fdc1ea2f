"""A tiny trained shapes run (boxes + masks) shared by the evaluation tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "metrics"))  # the reference oracle

SHAPES = [
    "data=shapes", "data.num_workers=0", "data.train_size=64", "data.val_size=32",
    "data.test_size=24", "data.batch_size=16",
]  # fmt: skip


def run(script: str, *overrides: str, run_dir: Path, timeout: int = 300):
    """``python <script> hydra.run.dir=<run_dir> overrides...`` as a user runs it."""
    cmd = [sys.executable, str(ROOT / script), f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def evaluate(*overrides: str, run_dir: Path) -> dict:
    out = run("evaluate.py", *overrides, run_dir=run_dir)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """Run dir of one epoch of resnet18 on 64 tiny shapes images (val localization logged)."""
    run_dir = tmp_path_factory.mktemp("shapes_run")
    out = run(
        "train.py", *SHAPES, "trainer.max_epochs=1", "trainer.accelerator=cpu",
        "logger=csv", "~callbacks.cam_panel", "~callbacks.rich_progress_bar", run_dir=run_dir,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return run_dir
