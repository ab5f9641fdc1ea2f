"""A run killed with SIGKILL mid-epoch resumes from last.ckpt and finishes with nothing lost."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST, ROOT, compose_train

from camlab.train import train

# An epoch of 5 batches takes about 3 s: the kill, 0.5 s after epoch 1's last.ckpt
# appears, lands inside epoch 2.
BATCHES = 5
SHORT = [*FAST, "data.batch_size=32", "trainer.max_epochs=3", "trainer.limit_val_batches=1",
         f"trainer.limit_train_batches={BATCHES}", "test=false", "~callbacks.rich_progress_bar",
         "~callbacks.cam_panel"]  # fmt: skip


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
    time.sleep(0.5)  # into the second epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = torch.load(last, map_location="cpu", weights_only=False)
    assert killed["epoch"] < 2, "killed too late to test a resume"
    assert not list(first.glob("checkpoints/*.tmp"))

    # The resume runs train.py's train() in this process (the kill needed a real process).
    second = tmp_path / "second"
    train(compose_train(second, f"ckpt_path={last}", *SHORT, fast=()))
    done = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # every epoch and every optimizer step of the planned run happened exactly once
    assert done["epoch"] == 2 and done["global_step"] == 3 * BATCHES
    assert done["optimizer_states"][0]["state"]  # optimizer moments were restored, not reset
    assert done["lr_schedulers"][0]["last_epoch"] == 3
