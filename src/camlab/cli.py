"""Command-line entry points: ``train.py`` / ``camlab-train`` and ``evaluate.py`` /
``camlab-evaluate``.

Hydra parses the command line and composes the config here, before torch and Lightning are
imported (about 6 s on a 2-core machine), so ``--help``, ``--cfg job`` and a bad override answer
in about a second; the task functions import ``camlab.train`` / ``camlab.evaluate`` when a run
really starts.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from camlab.errors import CamlabError, user_message
from camlab.launch import check_sweep_extra

# Shipped inside the package, so an installed wheel runs from any directory.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def train_main() -> None:
    """``python train.py [overrides]``: checks that sweep plugins asked for are installed, then
    lets Hydra compose the config and run ``camlab.train.train`` (once, or per job with ``-m``)."""
    try:
        check_sweep_extra(sys.argv[1:])
    except CamlabError as err:
        print(f"\nError: {user_message(err)}", file=sys.stderr)
        sys.exit(1)
    train_task()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train_task(cfg: DictConfig) -> float | None:
    """Hydra's task function: its return value is what a sweeper (Optuna) optimizes."""
    from camlab.train import run_job

    return run_job(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def evaluate_main(cfg: DictConfig) -> None:
    """``python evaluate.py ckpt_path=<ckpt> [overrides]``."""
    from camlab.evaluate import run_job

    run_job(cfg)
