"""Run folders are never overwritten: a Hydra callback that refuses, before Hydra writes
anything, to start a run in a folder that already holds another run's outputs."""

import glob
import logging
import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from camlab.errors import CamlabError, report_error

log = logging.getLogger(__name__)


def run_outputs(run_dir: str) -> list[str]:
    """The files in ``run_dir`` that a finished (or interrupted) run leaves and that a second
    run would overwrite: ``metrics.json`` and ``checkpoints/*.ckpt``."""
    metrics = os.path.join(run_dir, "metrics.json")
    found = [metrics] if os.path.exists(metrics) else []
    return found + sorted(glob.glob(os.path.join(glob.escape(run_dir), "checkpoints", "*.ckpt")))


def overwrite_problem(run_dir: str, task_name: str, ckpt_path: Any) -> str | None:
    """Why starting this run in ``run_dir`` would overwrite another run's outputs, or None.

    A training run may continue in its own folder (``ckpt_path`` inside ``<run_dir>/
    checkpoints``); nothing else may start where outputs exist.
    """
    found = run_outputs(run_dir)
    if not found:
        return None
    checkpoints = os.path.realpath(os.path.join(run_dir, "checkpoints"))
    resuming = isinstance(ckpt_path, str) and ckpt_path
    if resuming and task_name == "train":
        if os.path.dirname(os.path.realpath(ckpt_path)) == checkpoints:
            return None
    shown = ", ".join(os.path.relpath(p, run_dir) for p in found[:4])
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    resume = (
        f"; to continue that training run, pass ckpt_path={run_dir}/checkpoints/last.ckpt"
        if task_name == "train" and any(p.endswith(".ckpt") for p in found)
        else ""
    )
    return (
        f"{run_dir} already holds a run ({shown}{more}), and camlab never overwrites a run's "
        "outputs: nothing was written. Choose a new folder (hydra.run.dir=<new folder>, or "
        f"leave hydra.run.dir unset for a new timestamped one){resume}."
    )


def _refuse(message: str) -> None:
    report_error(CamlabError(message), log)  # no run log yet: stderr only
    sys.exit(1)


class KeepRunOutputs(Callback):
    """Hydra callback (configs/hydra/default.yaml): refuses a run or multirun whose folder
    already holds another run's outputs, before Hydra rewrites its ``.hydra`` config there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # DDP ranks > 0 re-run the command into the folder rank 0 is writing: not a second run.
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return
        run_dir = str(OmegaConf.select(config, "hydra.run.dir"))
        problem = overwrite_problem(run_dir, config.get("task_name", ""), config.get("ckpt_path"))
        if problem:
            _refuse(problem)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(OmegaConf.select(config, "hydra.sweeper._target_")).endswith("WSOLSearchSweeper"):
            return  # a search resumes in its folder; its sweeper refuses used trial folders
        sweep_dir = str(OmegaConf.select(config, "hydra.sweep.dir"))
        found = glob.glob(os.path.join(glob.escape(sweep_dir), "multirun.yaml"))
        found += glob.glob(os.path.join(glob.escape(sweep_dir), "*", "metrics.json"))
        if found:
            _refuse(
                f"{sweep_dir} already holds a multirun ({os.path.relpath(found[0], sweep_dir)}"
                "), and camlab never overwrites a run's outputs: nothing was written. Choose a "
                "new folder (hydra.sweep.dir=<new folder>, or leave it unset for a new "
                "timestamped one)."
            )
