"""Running ``train.py`` and ``scripts/summarize.py`` as a user does, with the test configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# experiment=sweep_tiny (seconds per job) and experiment=ddp_equal live here.
CONFIGS = HERE / "configs"


def env() -> dict[str, str]:
    """PYTHONPATH reaches sweep_data (the DDP test's data module), in DDP children too."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}


def run_train(*overrides: str, timeout: int = 400) -> subprocess.CompletedProcess:
    """``python train.py --config-dir tests/sweep/configs <overrides>`` from the repo root."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--config-dir", str(CONFIGS), *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env())


def run_summarize(sweep_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(sweep_dir)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env())


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job directories in job order (any depth: a ``/`` in an override nests them)."""
    jobs = [p.parent for p in sweep_dir.glob("**/.hydra")]
    return sorted(jobs, key=lambda p: int(p.relative_to(sweep_dir).parts[0].split("_", 1)[0]))


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())
