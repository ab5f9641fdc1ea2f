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


def compose_config(name: str, *overrides: str, run_dir: Path):
    """The config ``python <name>.py overrides...`` runs, outputs in ``run_dir``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose(name, overrides=[f"paths.output_dir={run_dir}", *overrides])


def evaluate(*overrides: str, run_dir: Path, cli: bool = False) -> dict:
    """``evaluate.py overrides...``: in this process (``camlab.evaluate.evaluate``, what the
    script runs), or as a user runs it (``cli``); returns its metrics.json."""
    if cli:
        out = run("evaluate.py", *overrides, run_dir=run_dir)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    else:
        from camlab.evaluate import evaluate as camlab_evaluate

        camlab_evaluate(compose_config("eval", *overrides, run_dir=run_dir))
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """Run dir of one epoch of resnet18 on 64 tiny shapes images (val localization logged),
    trained in this process by ``camlab.train.train``."""
    from camlab.train import train

    run_dir = tmp_path_factory.mktemp("shapes_run")
    overrides = [
        *SHAPES, "trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=csv",
        "~callbacks.cam_panel", "~callbacks.rich_progress_bar",
    ]  # fmt: skip
    train(compose_config("train", *overrides, run_dir=run_dir))
    return run_dir
