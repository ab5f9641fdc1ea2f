"""Hydra sweeper of the WSOL search protocol (``hparams_search=wsol_<method>``): the Hydra wiring
around ``camlab.search``; see configs/hparams_search/wsol.yaml.

Hydra only instantiates sweepers from the ``hydra_plugins`` package, hence this module's home.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class WSOLSearchSweeper(Sweeper):
    """Random search with a fixed budget; the selected trial evaluated once on test.

    Args:
        budget: finished trials the search runs in all (the paper's 30), resumed or not.
        seed: the draws' seed; trial ``n`` draws the same values whenever it runs.
        space: override key -> distribution (``camlab.search.space``).
        study_name / storage: the Optuna study (sqlite: resumable).
        direction: ``maximize`` (MaxBoxAccV2, PxAP).
        batch: trials launched together (a parallel launcher runs them at once).
        test: overrides of the selected trial's evaluation (configs/eval.yaml); null skips it.
    """

    def __init__(self, budget: int, seed: int, space: Any, study_name: str, storage: str,
                 direction: str = "maximize", batch: int = 1,
                 test: Any = None) -> None:  # fmt: skip
        self.budget, self.seed, self.batch = budget, seed, batch
        self.space = OmegaConf.to_container(space, resolve=True) if space is not None else None
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.test = None if test is None else list(OmegaConf.to_container(test, resolve=True))
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:  # fmt: skip
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> dict:
        from camlab.search.run import run_search

        assert self.config is not None
        return run_search(self, self.config, arguments)

    def launch(self, jobs: list[list[str]], first: int) -> list:
        """Runs trial jobs (numbered from ``first``) through the configured Hydra launcher."""
        if len(jobs) > 1:  # a parallel batch: compose them all before any is queued
            self.validate_batch_is_legal(jobs)
        return list(self.launcher.launch(jobs, initial_job_idx=first))

    @property
    def sweep_dir(self) -> Path:
        assert self.config is not None
        return Path(str(self.config.hydra.sweep.dir))
