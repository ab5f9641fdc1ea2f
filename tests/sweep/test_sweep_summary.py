"""camlab.summarize on hand-made sweep directories: ordering, failed jobs, plots, errors."""

import csv
import json

import matplotlib.image
import pytest
from sweep_helpers import run_summarize

from camlab.errors import CamlabError
from camlab.summarize import summarize, write


def make_job(sweep, num, overrides, value=None, metric="val/acc", wrote_metrics=True):
    name = f"{num}_" + ",".join(overrides)
    hydra_dir = sweep / name / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if wrote_metrics:
        logged = {} if value is None else {metric: value, "val/loss": 1.0 - value}
        data = {"optimized_metric": metric, "value": value, "metrics": logged}
        (sweep / name / "metrics.json").write_text(json.dumps(data))
    return name


def test_sorted_best_first_then_unfinished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    names = [
        make_job(sweep, 0, ["model=resnet18", "model.optimizer.lr=0.001"], 0.5),
        make_job(sweep, 1, ["model=resnet18", "model.optimizer.lr=0.01"], wrote_metrics=False),
        make_job(sweep, 2, ["model=vgg16", "model.optimizer.lr=0.001"], 0.9),
        make_job(sweep, 3, ["model=vgg16", "model.optimizer.lr=0.01"], None),  # never logged
        make_job(sweep, 10, ["model=vgg16", "model.optimizer.lr=0.1"], 0.7),
    ]
    summary = summarize(sweep)
    assert summary.metric == "val/acc"
    assert summary.params == ["model", "model.optimizer.lr"]
    assert [j.name for j in summary.jobs] == [names[2], names[4], names[0], names[1], names[3]]
    assert [j.status for j in summary.jobs] == ["ok", "ok", "ok", "failed", "no metric"]
    paths = write(summary, sweep)
    with open(paths["csv"]) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["job", "status", "model", "model.optimizer.lr", "val/acc", "val/loss"]
    assert rows[1][2:5] == ["vgg16", "0.001", "0.9"]
    assert rows[4][:2] == [names[1], "failed"] and rows[4][4] == ""
    # one panel per parameter: categorical (model) and log-scale numeric (lr)
    assert matplotlib.image.imread(paths["png"]).shape[1] >= 2 * 300


def test_optuna_results_and_direction(tmp_path):
    sweep = tmp_path / "optuna"
    make_job(sweep, 0, ["model.optimizer.lr=0.001", "seed=1"], 0.3, metric="val/loss")
    make_job(sweep, 1, ["model.optimizer.lr=0.002", "seed=1"], 0.1, metric="val/loss")
    (sweep / "0_model.optimizer.lr=0.001,seed=1" / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  sweeper:\n    direction: minimize\n"
    )
    (sweep / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  model.optimizer.lr: 0.002\nbest_value: 0.1\n"
    )
    summary = summarize(sweep)
    assert summary.params == ["model.optimizer.lr"]  # seed did not vary
    assert [j.value for j in summary.jobs] == [0.1, 0.3]  # minimized: lowest first
    assert "Optuna best: 0.1 with model.optimizer.lr=0.002" in summary.markdown()


def test_no_jobs_is_a_clear_error(tmp_path):
    with pytest.raises(CamlabError, match="No jobs in"):
        summarize(tmp_path)
    out = run_summarize(tmp_path / "missing")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "is not a directory" in out.stderr
