"""Both callbacks under 2-process CPU DDP: no hang, panels written once, metrics synced."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cb_helpers import METHODS, offline_metrics, read_events

SCRIPT = """
import json, sys
sys.path.insert(0, {helpers!r})
import torch
from cb_helpers import fit

if __name__ == "__main__":
    torch.set_num_threads(1)
    root = __import__("pathlib").Path({root!r})
    trainer, _ = fit(root, freeze_bn_stats=True, strategy="ddp", devices=2)
    if trainer.is_global_zero:
        metrics = {{k: float(v) for k, v in trainer.callback_metrics.items()}}
        (root / "metrics.json").write_text(json.dumps(metrics))
"""


@pytest.mark.slow
def test_ddp_two_processes(tmp_path):
    script = tmp_path / "ddp_fit.py"
    helpers = str(Path(__file__).resolve().parent)
    script.write_text(textwrap.dedent(SCRIPT.format(helpers=helpers, root=str(tmp_path))))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = read_events(tmp_path / "tb" / "run")
    for method in METHODS:
        # rank 0 only, once: step 0, then the steps of the validation scalars
        assert [e.step for e in events.Images(f"cam/{method}")] == [0, 1, 3]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    expected = offline_metrics(tmp_path / "ckpt" / "last.ckpt")
    for name, value in expected.items():
        # The two ranks' halves of the val split, summed by torchmetrics: the whole split.
        assert metrics[name] == pytest.approx(value, abs=1e-4), name
        assert [e.step for e in events.Scalars(name)] == [1, 3]
    # One summary line per epoch, written by rank 0 alone.
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/2 step 1", "epoch 2/2 step 3"]
