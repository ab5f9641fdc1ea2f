"""``run_search``: one WSOL search from start (or resumption) to its record, search.json."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from camlab.errors import CamlabError
from camlab.rundir import run_outputs
from camlab.search.protocol import (
    RECORD,
    counted,
    open_study,
    recover_interrupted,
    run_trials,
    select,
    selected_checkpoint,
    trial_record,
    write_record,
)  # fmt: skip
from camlab.search.space import draw, parse_space, trial_seeded_sampler

log = logging.getLogger(__name__)
# Hydra sweep syntax in a command-line value: a search draws its values, it does not sweep.
# What a trial is scored by on train-fullsup (val): MaxBoxAccV2, or PxAP for mask-only data.
PROTOCOL_METRICS = ("val/max_box_acc_v2", "val/pxap")
SWEEP_SYNTAX = re.compile(r"^[^=]+=(.*,.*|(range|choice|interval|glob|tag)\(.*)$")


def check_arguments(arguments: list[str], space: dict) -> None:
    for arg in arguments:
        if SWEEP_SYNTAX.match(arg) and not re.search(r"[\[{'\"]", arg.split("=", 1)[1]):
            raise CamlabError(
                f"`{arg}` sweeps values, but hparams_search=wsol_* draws its own (search.space)."
                " Give one value per override, or run one search per value (e.g. per seed)."
            )
        key = arg.lstrip("+~").split("=", 1)[0]
        if key in space:
            raise CamlabError(
                f"`{arg}` fixes {key}, which the search draws. Drop it, or remove the key from "
                f"the space (~hydra.sweeper.space.{key})."
            )


def search_identity(config: DictConfig) -> dict[str, Any]:
    """What the results table groups by: method, data set, backbone (and arch), seed."""
    choices = config.hydra.runtime.choices
    model = config.get("model") or {}
    return {
        "method": str(OmegaConf.select(config, "method.name", default="cam")),
        "data": str(choices.get("data")),
        "backbone": str(model.get("backbone")),
        "arch": str(model.get("arch", "torchvision")),
        "seed": config.get("seed"),
        "metric": str(config.get("optimized_metric")),
    }


def evaluate_on_test(ckpt: str, out_dir: Path, overrides: list[str]) -> dict:
    """The selected trial's one evaluation on test, with configs/eval.yaml (in this process:
    Hydra's compose API, inside the running app)."""
    from hydra import compose

    from camlab.evaluate import evaluate

    quoted = ckpt.replace("\\", "\\\\").replace("'", "\\'")
    cfg = compose(
        config_name="eval",
        overrides=[f"ckpt_path='{quoted}'", f"paths.output_dir='{out_dir}'", "split=test",
                   *overrides],
    )  # fmt: skip
    return evaluate(cfg)


def check_trial_dirs(sweep_dir: Path, first: int, count: int) -> None:
    """Refuses to start trials whose folders hold another run's outputs (a study file deleted
    beside its trial folders): camlab never overwrites a run."""
    for number in range(first, first + count):
        found = run_outputs(str(sweep_dir / f"trial_{number}"))
        if found:
            raise CamlabError(
                f"{found[0]} belongs to an earlier trial {number}, but the study does not know "
                "it (was its .db file removed?). Nothing was overwritten. Resume with the "
                "study file, or start a new search (hydra.sweeper.study_name=<new name>)."
            )


def run_search(sweeper, config: DictConfig, arguments: list[str]) -> dict:
    """Runs (or resumes) the search, evaluates the selected trial on test, writes search.json."""
    space = parse_space(sweeper.space)
    check_arguments(arguments, space)
    if config.get("optimized_metric") not in PROTOCOL_METRICS:
        raise CamlabError(
            f"optimized_metric={config.get('optimized_metric')} is not a score of the protocol: "
            "trials are selected on val (train-fullsup) by optimized_metric=val/max_box_acc_v2 "
            "(box data) or val/pxap (masks only). Pass one, or start from a WSOL recipe "
            "(experiment=wsol_cub_vgg16_cam), which sets it."
        )
    sweep_dir = sweeper.sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(sweeper.study_name, sweeper.storage, trial_seeded_sampler(sweeper.seed),
                       sweeper.direction)  # fmt: skip
    interrupted = recover_interrupted(study)

    def config_value(key: str):
        return OmegaConf.select(config, key)

    def launch(jobs: list[list[str]], first: int) -> list:
        check_trial_dirs(sweep_dir, first, len(jobs))
        return sweeper.launch(jobs, first)

    log.info("Search %s: %d of %d trials done; storage %s", sweeper.study_name,
             len(counted(study)), sweeper.budget, sweeper.storage)  # fmt: skip
    run_trials(study, sweeper.budget, lambda t: draw(space, t, config_value), launch, arguments,
               sweeper.batch)  # fmt: skip

    trials = [trial_record(t) for t in study.get_trials(deepcopy=False)]
    chosen = select(study)
    record = {
        "protocol": "wsolevaluation (Choe et al., CVPR 2020): random search, select on "
        "train-fullsup (val), evaluate the selected trial once on test",
        "study": sweeper.study_name,
        "storage": sweeper.storage,
        **search_identity(config),
        "budget": sweeper.budget,
        "search_seed": sweeper.seed,
        "space": sweeper.space,
        "resumed_interrupted": interrupted,
        "finished": len(counted(study)),
        "failed": sum(t["state"] == "FAIL" and not t["interrupted"] for t in trials),
        "trials": trials,
        "selected": None,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if chosen is None:
        write_record(sweep_dir / RECORD, record)
        raise CamlabError(
            f"No trial of {sweeper.study_name} finished ({record['failed']} failed); see the "
            f"errors in {sweep_dir / RECORD} and each trial's train.log."
        )
    selected = trial_record(chosen)
    if sweeper.test is not None:
        ckpt = selected_checkpoint(selected["dir"])
        test_dir = sweep_dir / f"test_trial_{chosen.number}"
        if (test_dir / "metrics.json").is_file():  # evaluated by an earlier invocation
            summary = json.loads((test_dir / "metrics.json").read_text())
        else:
            summary = evaluate_on_test(ckpt, test_dir, sweeper.test)
        selected["test"] = summary.get("methods", {})
        selected["test_dir"] = str(test_dir)
        selected["checkpoint"] = ckpt
    record["selected"] = selected
    write_record(sweep_dir / RECORD, record)
    log.info("Selected trial %d (val %.4f); record in %s", chosen.number, chosen.value,
             sweep_dir / RECORD)  # fmt: skip
    return record
