"""Entry-point helpers for sweeps: the `sweep` extra check and Lightning DDP inside multiruns."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from camlab.errors import CamlabError

EXTRA_FIX = 'pip install -e ".[sweep]"'
# Override prefixes on the command line -> (what they are, modules the plugin needs).
OPTUNA = ("the Optuna sweeper", ("hydra_plugins.hydra_optuna_sweeper._impl", "optuna"))
SUBMITIT = ("the submitit launcher", ("hydra_plugins.hydra_submitit_launcher.submitit_launcher",))
PLUGIN_OVERRIDES = {
    "hparams_search=": OPTUNA,
    "hydra/sweeper=optuna": OPTUNA,
    "hydra/launcher=slurm": SUBMITIT,
    "hydra/launcher=submitit": SUBMITIT,
}
# Set by Lightning's launcher in the launching process; left over, they make the next
# multirun job believe it is a DDP child that another process launched (and OMP_NUM_THREADS,
# cpu_count // devices, would hold the next job's thread count).
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
# Hydra flags that take a value and must reach the DDP children unchanged.
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def check_sweep_extra(argv: Sequence[str]) -> None:
    """Raises CamlabError naming the `sweep` extra when an override needs a missing plugin.

    Hydra fails at compose time ("Could not find 'hydra/sweeper/optuna'"), before any of our
    code runs, so the command line is checked first.
    """
    for arg in argv:
        arg = arg.lstrip("+~")
        if arg.endswith("=null"):  # e.g. hparams_search=null: no plugin needed
            continue
        for prefix, plugin in PLUGIN_OVERRIDES.items():
            if not arg.startswith(prefix):
                continue
            what, modules = plugin
            for module in modules:
                try:
                    importlib.import_module(module)
                except ImportError as err:
                    raise CamlabError(
                        f"`{arg}` needs {what} ({err.name or module} is not installed). "
                        f"Install the sweep extra: {EXTRA_FIX}"
                    ) from err
            if plugin is OPTUNA:
                check_sqlalchemy()


def check_sqlalchemy() -> None:
    """optuna 2.x (pinned by the sweeper) fails on any database storage with SQLAlchemy 2."""
    try:
        import sqlalchemy
    except ImportError:
        return  # optuna imports it only for database storages; the sweep extra installs it
    if int(sqlalchemy.__version__.split(".")[0]) >= 2:
        raise CamlabError(
            f"SQLAlchemy {sqlalchemy.__version__} breaks optuna 2's sqlite study storage. "
            f'Install the sweep extra, which pins sqlalchemy<2: {EXTRA_FIX} (or "sqlalchemy<2").'
        )


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def child_argv(argv: Sequence[str], task_overrides: Sequence[str]) -> list[str]:
    """The single-run command of one multirun job: the script and its config flags, the job's
    own overrides, RUN mode (hparams_search sets MULTIRUN in the config)."""
    keep = [argv[0]]
    args = iter(argv[1:])
    for arg in args:
        if arg in CONFIG_FLAGS:
            keep += [arg, next(args, "")]
        elif arg.split("=", 1)[0] in CONFIG_FLAGS:
            keep.append(arg)
    return [*keep, *task_overrides, "hydra.mode=RUN"]


@contextlib.contextmanager
def multirun_job() -> Iterator[None]:
    """Makes Lightning's DDP work in each job of a Hydra multirun (no-op outside multiruns).

    Lightning starts DDP ranks 1.. by re-running ``sys.argv`` with ``hydra.run.dir=<HydraConfig
    run.dir>``. In a multirun that would re-run the whole sweep (``-m`` and all values) in the
    job-less ``run.dir``, so for the job's duration argv is the job's own single-run command and
    ``run.dir`` its output directory. Afterwards the process group and the DDP environment
    variables that Lightning left behind are cleared, so the next job starts its own ranks.
    """
    if not in_multirun():
        yield
        return
    import torch  # here: the command-line entry imports this module before torch is needed

    hydra_cfg = HydraConfig.get()
    saved_argv, saved_run_dir, threads = sys.argv, hydra_cfg.run.dir, torch.get_num_threads()
    saved_env = {key: os.environ.get(key) for key in DDP_ENV}
    sys.argv = child_argv(sys.argv, list(hydra_cfg.overrides.task))
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_run_dir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class SqliteDir(Callback):
    """Hydra callback: creates the directory of a ``sqlite:///`` sweeper storage (sqlite does
    not), before the sweeper opens it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        storage = config.hydra.sweeper.get("storage")
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
