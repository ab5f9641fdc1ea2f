"""A run killed with SIGKILL mid-epoch resumes from last.ckpt and finishes with nothing lost."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST, ROOT, run_train

SHORT = [*FAST, "data.batch_size=32", "trainer.max_epochs=3", "trainer.limit_train_batches=12",
         "trainer.limit_val_batches=2", "test=false", "~callbacks.rich_progress_bar"]  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    first = tmp_path / "first"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={first}", *SHORT],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = first / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), "the first epoch never finished"
    time.sleep(1.0)  # well into the second epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = torch.load(last, map_location="cpu", weights_only=False)
    assert killed["epoch"] < 2, "killed too late to test a resume"
    assert not list(first.glob("checkpoints/*.tmp"))

    second = tmp_path / "second"
    out = run_train(f"ckpt_path={last}", *SHORT, run_dir=second)
    assert out.returncode == 0, out.stderr[-3000:]
    done = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # every epoch and every optimizer step of the planned run happened exactly once
    assert done["epoch"] == 2 and done["global_step"] == 3 * 12
    assert done["optimizer_states"][0]["state"]  # optimizer moments were restored, not reset
    assert done["lr_schedulers"][0]["last_epoch"] == 3
