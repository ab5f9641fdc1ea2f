"""The WSOL search protocol of Choe et al. (CVPR 2020, Sec. 5): a random search with a fixed
budget, every trial trained on train and scored on ``train-fullsup`` (the val split), and the
selected trial evaluated once on test.

The study lives in an Optuna sqlite file. Resuming is part of the protocol: trials left
``RUNNING`` by a killed search are marked failed (``interrupted``) and their values drawn
again, and only finished trials count toward the budget, so a search that was killed and resumed
runs the same trials as one that was not. A trial that fails is recorded and the search goes on.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from camlab.errors import CamlabError

log = logging.getLogger(__name__)
RECORD = "search.json"


def open_study(name: str, storage: str, sampler, direction: str = "maximize"):
    """Creates or loads the study (optuna 2's ``create_study(load_if_exists=True)``)."""
    import optuna

    return optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, direction=direction,
        load_if_exists=True,
    )  # fmt: skip


def recover_interrupted(study) -> list[int]:
    """Marks trials a killed search left ``RUNNING`` as failed (user attribute ``interrupted``);
    returns their numbers. They do not count toward the budget, and the next fresh trial draws
    what the interrupted one drew (``camlab.search.space.draw_index``).

    Trials of this protocol run from one search process at a time, so a RUNNING trial at
    start-up is one whose process died.
    """
    from optuna.trial import TrialState

    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("Trial %d was interrupted; its values are drawn again.", trial.number)
    return [t.number for t in stale]


def counted(study) -> list:
    """The trials that use up the budget: finished (complete or failed), not interrupted."""
    from optuna.trial import TrialState

    return [
        t for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.FAIL) and not t.user_attrs.get("interrupted")
    ]  # fmt: skip


def trial_value(job_return) -> float:
    """The job's objective; raises (the job's own exception) when the job failed."""
    value = job_return.return_value  # re-raises the job's exception
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise CamlabError(f"the trial returned {value!r}, not a number") from err
    if math.isnan(value):
        raise CamlabError("the trial's metric is NaN")
    return value


def run_trials(
    study,
    budget: int,
    draw: Callable[[Any], dict[str, Any]],
    launch: Callable[[list[list[str]], int], Sequence[Any]],
    arguments: Sequence[str],
    batch: int = 1,
) -> None:
    """Asks, launches and tells trials until ``budget`` trials have finished.

    Args:
        draw: an optuna trial -> {override key: value}.
        launch: (a list of override lists, the first job number) -> Hydra JobReturns; the job
            number of each is its trial number (its folder ``trial_<number>``).
        arguments: the command line's own overrides, given to every trial.
        batch: trials launched together (a parallel launcher such as SLURM runs them at once).
    """
    from optuna.trial import TrialState

    from camlab.search.space import override_value

    while (left := budget - len(counted(study))) > 0:
        trials = [study.ask() for _ in range(min(batch, left))]
        numbers = [t.number for t in trials]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise CamlabError(f"Trial numbers {numbers} are not consecutive; rerun the search.")
        jobs = []
        for trial in trials:
            values = draw(trial)
            trial.set_user_attr("overrides", {k: override_value(v) for k, v in values.items()})
            jobs.append([*arguments, *(f"{k}={override_value(v)}" for k, v in values.items())])
        returns = launch(jobs, numbers[0])
        for trial, job_return in zip(trials, returns, strict=True):
            hydra_cfg = job_return.hydra_cfg
            out = hydra_cfg.hydra.runtime.output_dir if hydra_cfg is not None else None
            trial.set_user_attr("dir", str(out or ""))
            try:
                study.tell(trial, trial_value(job_return))
            except Exception as err:  # the job's own error: recorded, the search goes on
                trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
                study.tell(trial, state=TrialState.FAIL)
                log.warning("Trial %d failed: %s", trial.number, err)


def select(study):
    """The selected trial: the best finished one (the lowest number among equals), or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        return None
    sign = 1 if study.direction.name == "MAXIMIZE" else -1
    return max(done, key=lambda t: (sign * t.value, -t.number))


def trial_record(trial) -> dict:
    """What search.json keeps of a trial."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.user_attrs.get("overrides", {}),
        "dir": trial.user_attrs.get("dir"),
        "interrupted": bool(trial.user_attrs.get("interrupted", False)),
        "error": trial.user_attrs.get("error"),
    }


def selected_checkpoint(trial_dir: str) -> str:
    """The checkpoint train() recorded in the trial's metrics.json (the last epoch's, as the
    reference reports)."""
    metrics = Path(trial_dir) / "metrics.json"
    try:
        ckpt = json.loads(metrics.read_text()).get("best_checkpoint")
    except (OSError, ValueError) as err:
        raise CamlabError(f"The selected trial's {metrics} cannot be read ({err}).") from err
    if not ckpt or not Path(ckpt).is_file():
        raise CamlabError(
            f"The selected trial's checkpoint {ckpt!r} (from {metrics}) is missing; its run "
            "folder was changed after the trial."
        )
    return ckpt


def write_record(path: Path, record: dict) -> None:
    """Writes search.json (through a temporary file: a kill never leaves half a record)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
