"""Summary of a Hydra multirun (grid or Optuna): a sorted table and the metric per parameter.

``python scripts/summarize.py <sweep dir>`` reads each job directory (``.hydra/overrides.yaml``
and the ``metrics.json`` that ``camlab.train.train`` writes) and writes ``summary.md``,
``summary.csv`` and ``summary.png`` into the sweep directory.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from camlab.errors import CamlabError

# Shown next to the optimized metric when a job logged them.
FINAL_METRICS = ("val/acc", "val/loss", "val/max_box_acc_v2", "val/top1_loc", "test/acc")


@dataclass
class Job:
    """One job directory of a multirun."""

    name: str
    num: int
    params: dict[str, str]
    status: str  # ok | no metric (train raised after writing metrics.json) | failed
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def parse_override(override: str) -> tuple[str, str]:
    """``model.optimizer.lr=0.001`` -> (key, value); ``~key`` and ``+key=...`` keep their key."""
    key, _, value = override.lstrip("+~").partition("=")
    return key, value


def load_job(sweep_dir: Path, job_dir: Path) -> tuple[Job, str | None]:
    """The job and the name of its optimized metric (None when it wrote no metrics.json)."""
    overrides = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    params = dict(parse_override(str(o)) for o in overrides or [])
    name = job_dir.relative_to(sweep_dir).as_posix()
    job = Job(name, job_number(name), params, "failed")
    metrics_file = job_dir / "metrics.json"
    if not metrics_file.is_file():
        return job, None
    data = json.loads(metrics_file.read_text())
    job.metrics = {k: float(v) for k, v in data.get("metrics", {}).items()}
    job.value = None if data.get("value") is None else float(data["value"])
    job.status = "ok" if job.value is not None and not math.isnan(job.value) else "no metric"
    return job, data.get("optimized_metric")


def job_number(name: str) -> int:
    """``3_model=vgg16`` -> 3 (the ``${hydra.job.num}_`` prefix); -1 without one."""
    prefix = name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else -1


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job directories (those holding ``.hydra/overrides.yaml``), in job-number order.

    Searched at any depth: an override value with a ``/`` (``optimized_metric=val/acc``) puts
    Hydra's job directory one level further down.
    """
    if not sweep_dir.is_dir():
        raise CamlabError(f"{sweep_dir} is not a directory; give a multirun (sweep) directory.")
    jobs = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")]
    if not jobs:
        raise CamlabError(
            f"No jobs in {sweep_dir}: expected job directories holding .hydra/overrides.yaml, "
            "as in the sweep directory of `python train.py -m ...` "
            "(outputs/train/multiruns/<date>_<time>)."
        )
    return sorted(jobs, key=lambda p: (job_number(p.relative_to(sweep_dir).as_posix()), p))


def swept_keys(sweep_dir: Path, jobs: list[Job]) -> list[str]:
    """Parameters that vary: sweep syntax on the command line (``multirun.yaml``), Optuna's
    parameters (``optimization_results.yaml``) and any override whose value differs by job."""
    keys: set[str] = set()
    multirun = sweep_dir / "multirun.yaml"
    if multirun.is_file():
        for override in OmegaConf.load(multirun).hydra.overrides.task:
            key, value = parse_override(str(override))
            if "," in value or value.startswith(("range(", "choice(", "glob(")):
                keys.add(key)
    results = sweep_dir / "optimization_results.yaml"
    if results.is_file():
        keys |= set(OmegaConf.load(results).get("best_params") or {})
    all_keys = [k for job in jobs for k in job.params]
    for key in all_keys:
        if len({job.params.get(key) for job in jobs}) > 1:
            keys.add(key)
    return sorted(keys, key=all_keys.index)


def sort_jobs(jobs: list[Job], maximize: bool = True) -> list[Job]:
    """Finished jobs best first, then the others (no metric, failed) in job order."""
    done = sorted((j for j in jobs if j.status == "ok"), key=lambda j: j.value, reverse=maximize)
    return done + sorted((j for j in jobs if j.status != "ok"), key=lambda j: j.num)


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@dataclass
class Summary:
    """The table of a sweep: rows sorted by the optimized metric."""

    metric: str
    params: list[str]
    extra: list[str]
    jobs: list[Job]
    optuna: dict | None = None

    @property
    def header(self) -> list[str]:
        return ["job", "status", *self.params, self.metric, *self.extra]

    def rows(self) -> list[list[str]]:
        return [
            [j.name, j.status, *(j.params.get(k, "") for k in self.params), fmt(j.value),
             *(fmt(j.metrics.get(m)) for m in self.extra)]
            for j in self.jobs
        ]  # fmt: skip

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        done = sum(j.status == "ok" for j in self.jobs)
        text = f"{len(self.jobs)} jobs, {done} finished; sorted by {self.metric}.\n\n"
        if self.optuna:
            best = ", ".join(f"{k}={v}" for k, v in self.optuna.get("best_params", {}).items())
            text += f"Optuna best: {fmt(self.optuna.get('best_value'))} with {best}.\n\n"
        return text + "\n".join(lines) + "\n"


def summarize(sweep_dir: Path, metrics: tuple[str, ...] = FINAL_METRICS) -> Summary:
    """Reads a sweep directory into a ``Summary``."""
    loaded = [load_job(sweep_dir, p) for p in find_jobs(sweep_dir)]
    jobs = [job for job, _ in loaded]
    names = {name for _, name in loaded if name}
    metric = sorted(names)[0] if len(names) == 1 else "value"  # "value" if jobs differ
    optuna = None
    results = sweep_dir / "optimization_results.yaml"
    if results.is_file():
        optuna = OmegaConf.to_container(OmegaConf.load(results))
    maximize = True
    first = sweep_dir / jobs[0].name / ".hydra" / "hydra.yaml"
    if first.is_file():
        direction = OmegaConf.load(first).hydra.sweeper.get("direction")
        maximize = str(direction).lower() not in ("minimize", "direction.minimize")
    extra = [m for m in metrics if m != metric and any(m in j.metrics for j in jobs)]
    return Summary(metric, swept_keys(sweep_dir, jobs), extra, sort_jobs(jobs, maximize), optuna)


def as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot(summary: Summary, path: Path) -> None:
    """The optimized metric against each swept parameter (numeric or categorical axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [j for j in summary.jobs if j.status == "ok"]
    params = summary.params or ["job"]
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.5), squeeze=False)
    for ax, key in zip(axes[0], params, strict=True):
        values = [j.name if key == "job" else j.params.get(key, "") for j in done]
        y = [j.value for j in done]
        numbers = as_numbers(values) if key != "job" else None
        if numbers is not None:
            ax.scatter(numbers, y)
            if min(numbers, default=0) > 0 and max(numbers) >= 10 * min(numbers):
                ax.set_xscale("log")
        else:  # categories in first-seen order, one column each
            cats = list(dict.fromkeys(values))
            ax.scatter([cats.index(v) for v in values], y)
            ax.set_xticks(range(len(cats)), cats, rotation=30 if key != "job" else 90)
        ax.set_xlabel(key)
        ax.set_ylabel(summary.metric)
        ax.grid(alpha=0.3)
    failed = len(summary.jobs) - len(done)
    fig.suptitle(f"{summary.metric}, {len(done)} jobs" + (f" ({failed} failed)" if failed else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_files(
    out_dir: Path, stem: str, markdown: str, rows: list[list], plot_to: Callable[[Path], None]
) -> dict[str, Path]:
    """Writes ``<stem>.md``, ``<stem>.csv`` (``rows``, the header first) and ``<stem>.png``
    (``plot_to(path)``) into ``out_dir``; returns their paths by extension."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "png")}
    paths["md"].write_text(markdown)
    with open(paths["csv"], "w", newline="") as f:
        csv.writer(f).writerows(rows)
    plot_to(paths["png"])
    return paths


def write(summary: Summary, out_dir: Path) -> dict[str, Path]:
    """Writes summary.md, summary.csv and summary.png into ``out_dir``."""
    rows = [summary.header, *summary.rows()]
    return write_files(out_dir, "summary", summary.markdown(), rows, lambda p: plot(summary, p))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a `python train.py -m ...` sweep directory")
    parser.add_argument("--out", type=Path, help="where to write the files (the sweep dir)")
    parser.add_argument("--metrics", nargs="*", default=list(FINAL_METRICS),
                        help="metrics shown next to the optimized one, when logged")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.sweep_dir, tuple(args.metrics))
    except CamlabError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    paths = write(summary, args.out or args.sweep_dir)
    print(summary.markdown())
    print("Wrote " + ", ".join(str(p) for p in paths.values()))
