"""The paper's main table from a set of searches (``python scripts/wsol_table.py <dirs>``).

Rows: the WSOL methods, then the FSL (``fullsup``) and centre-Gaussian sanity rows; columns: data
set x backbone; cells: the test MaxBoxAccV2 (PxAP for mask data) of each search's selected trial,
mean +- std over seeds, with Choe et al.'s published value beside it where the paper has the
column. Reads the ``search.json`` records that ``hparams_search=wsol_<method>`` writes and
writes ``wsol_table.md``, ``wsol_table.csv`` and ``wsol_table.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from camlab.errors import CamlabError
from camlab.search.protocol import RECORD
from camlab.search.published import COLUMNS, published
from camlab.summarize import write_files

METHODS = ("cam", "has", "acol", "spg", "adl", "cutmix")
BASELINE_ROWS = ("fullsup", "center")
LABELS = {"cam": "CAM", "has": "HaS", "acol": "ACoL", "spg": "SPG", "adl": "ADL",
          "cutmix": "CutMix", "fullsup": "FSL baseline", "center": "Center baseline"}  # fmt: skip
METRICS = {"val/max_box_acc_v2": "max_box_acc_v2", "val/pxap": "pxap"}
METRIC_NAMES = {"max_box_acc_v2": "MaxBoxAccV2", "pxap": "PxAP"}


@dataclass
class Search:
    """What the table takes from one search.json."""

    path: Path
    method: str
    data: str
    backbone: str
    arch: str
    seed: int
    metric: str  # max_box_acc_v2 | pxap
    finished: int
    budget: int
    failed: int
    selected: int
    params: dict
    test: dict[str, float]  # row (the method, center, fullsup) -> test value


def _field(record: dict, key: str, kind: type | tuple, path: Path):
    value = record.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CamlabError(
            f"{path}: `{key}` is {value!r}, not a {getattr(kind, '__name__', kind)}. The file "
            "is not a search record of hparams_search=wsol_*; remove it from the inputs."
        )
    return value


def _number(value, what: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CamlabError(f"{path}: {what} is {value!r}, not a finite number.")
    return float(value)


def read_search(path: Path) -> Search | None:
    """One record, checked field by field (a record is a file someone may hand over); None for
    a search whose selected trial was not evaluated on test."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CamlabError(f"{path} cannot be read as JSON ({err}).") from err
    if not isinstance(record, dict):
        raise CamlabError(f"{path} is not a search record (a JSON object).")
    method = _field(record, "method", str, path)
    if method not in METHODS:
        raise CamlabError(f"{path}: method {method!r} is not one of {', '.join(METHODS)}.")
    metric = METRICS.get(_field(record, "metric", str, path))
    if metric is None:
        raise CamlabError(
            f"{path}: metric {record['metric']!r} is not one of {', '.join(METRICS)}."
        )
    selected = record.get("selected")
    if selected is None or "test" not in selected:
        return None
    tests = _field(selected, "test", dict, path)
    test = {}
    for row in (method, *BASELINE_ROWS):
        source = "cam" if row == method else row
        if source in tests:
            values = _field(tests, source, dict, path)
            test[row] = _number(values.get(metric), f"selected.test.{source}.{metric}", path)
    if method not in test:
        raise CamlabError(f"{path}: selected.test has no `cam` entry with {metric}.")
    return Search(
        path=path, method=method, data=_field(record, "data", str, path),
        backbone=_field(record, "backbone", str, path),
        arch=_field(record, "arch", str, path), seed=_field(record, "seed", int, path),
        metric=metric, finished=_field(record, "finished", int, path),
        budget=_field(record, "budget", int, path), failed=_field(record, "failed", int, path),
        selected=_field(selected, "number", int, path),
        params=_field(selected, "params", dict, path), test=test,
    )  # fmt: skip


def find_records(inputs: list[Path]) -> list[Path]:
    """search.json files: given directly, or anywhere under the given folders."""
    found: list[Path] = []
    for item in inputs:
        if item.is_file():
            found.append(item)
        elif item.is_dir():
            found += sorted(item.glob(f"**/{RECORD}"))
        else:
            raise CamlabError(f"{item} does not exist; give search folders or search.json files.")
    if not found:
        raise CamlabError(
            f"No {RECORD} under {', '.join(map(str, inputs))}: run searches first "
            "(python train.py experiment=wsol_cub_vgg16_cam hparams_search=wsol_cam)."
        )
    return list(dict.fromkeys(p.resolve() for p in found))


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    published: float | None = None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self) -> str:
        if not self.values:
            shown = "—"
        elif self.std is None:
            shown = f"{self.mean:.1f}"
        else:
            shown = f"{self.mean:.1f} ± {self.std:.1f} (n={len(self.values)})"
        return shown if self.published is None else f"{shown} [{self.published:.1f}]"


@dataclass
class Table:
    columns: list[tuple[str, str, str]]  # (data, backbone, arch)
    metrics: dict[tuple[str, str, str], str]
    rows: list[str]
    cells: dict[tuple[str, tuple[str, str, str]], Cell]
    searches: list[Search]

    def header(self, column) -> str:
        data, backbone, arch = column
        name = f"{data} {backbone}" + ("" if arch == "reference" else f" ({arch})")
        return f"{name}, {METRIC_NAMES[self.metrics[column]]}"

    def markdown(self) -> str:
        lines = ["| Method | " + " | ".join(map(self.header, self.columns)) + " |",
                 "|---|" + "---|" * len(self.columns)]  # fmt: skip
        for row in self.rows:
            cells = [self.cells[row, c].text() for c in self.columns]
            lines.append(f"| {LABELS[row]} | " + " | ".join(cells) + " |")
        seeds = sorted({s.seed for s in self.searches})
        text = (
            "Test score of each search's selected trial (selected on train-fullsup, last "
            f"checkpoint), mean ± std over seeds ({', '.join(map(str, seeds))}); [published] "
            "Choe et al.'s value where the paper has the column (its networks: "
            "model.arch=reference).\n\n" + "\n".join(lines) + "\n\nSearches:\n\n"
        )
        text += "| method | column | seed | trials finished / budget | failed | selected |\n"
        text += "|---|---|---|---|---|---|\n"
        for s in sorted(self.searches, key=lambda s: (METHODS.index(s.method), s.data,
                                                       s.backbone, s.seed)):  # fmt: skip
            params = ", ".join(
                f"{k}={float(v):.4g}" if _is_float(v) else f"{k}={v}" for k, v in s.params.items()
            )
            text += (
                f"| {LABELS[s.method]} | {s.data} {s.backbone} | {s.seed} | {s.finished} / "
                f"{s.budget} | {s.failed} | trial {s.selected}: {params} |\n"
            )
        return text

    def csv_rows(self) -> list[list]:
        out = [["row", "data", "backbone", "arch", "metric", "n", "mean", "std", "published",
                "values"]]  # fmt: skip
        for row in self.rows:
            for column in self.columns:
                cell = self.cells[row, column]
                out.append([row, *column, self.metrics[column], len(cell.values),
                            _fmt(cell.mean), _fmt(cell.std), _fmt(cell.published),
                            ";".join(f"{v:.6g}" for v in cell.values)])  # fmt: skip
        return out


def _is_float(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False  # choices (true, false) stay as written
    return True


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def build_table(searches: list[Search]) -> Table:
    """Groups the searches into cells; baseline rows count each (column, seed) once."""
    seen: dict[tuple, Path] = {}
    for s in searches:
        key = (s.method, s.data, s.backbone, s.arch, s.seed)
        if key in seen:
            raise CamlabError(
                f"Two searches for {s.method} on {s.data} {s.backbone} with seed {s.seed}: "
                f"{seen[key]} and {s.path}. Give one of them."
            )
        seen[key] = s.path

    def paper_order(column):
        return (COLUMNS.index(column[:2]) if column[:2] in COLUMNS else len(COLUMNS), column)

    columns = sorted({(s.data, s.backbone, s.arch) for s in searches}, key=paper_order)
    metrics: dict = {}
    for s in searches:
        column = (s.data, s.backbone, s.arch)
        if metrics.setdefault(column, s.metric) != s.metric:
            raise CamlabError(
                f"The searches on {s.data} {s.backbone} were scored by different metrics "
                f"({metrics[column]}, {s.metric}); give searches of one protocol per column."
            )
    rows = [m for m in METHODS if any(s.method == m for s in searches)]
    rows += [b for b in BASELINE_ROWS if any(b in s.test for s in searches)]
    cells = {(r, c): Cell(published=published(r, c[0], c[1])) for r in rows for c in columns}
    baseline_seen: set = set()
    for s in sorted(searches, key=lambda s: (METHODS.index(s.method), str(s.path))):
        column = (s.data, s.backbone, s.arch)
        cells[s.method, column].values.append(s.test[s.method])
        for row in BASELINE_ROWS:
            if row in s.test and (row, column, s.seed) not in baseline_seen:
                baseline_seen.add((row, column, s.seed))
                cells[row, column].values.append(s.test[row])
    return Table(columns, metrics, rows, cells, searches)


def plot(table: Table, path: Path) -> None:
    """One panel per column: each row's mean (std as error bar) and the published value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(table.columns)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 0.45 * len(table.rows) + 1.6),
                             squeeze=False, sharey=True)  # fmt: skip
    ys = list(range(len(table.rows)))[::-1]
    for ax, column in zip(axes[0], table.columns, strict=True):
        cells = [table.cells[r, column] for r in table.rows]
        means = [c.mean if c.mean is not None else math.nan for c in cells]
        errs = [c.std or 0.0 for c in cells]
        colors = ["tab:blue" if r in METHODS else "tab:gray" for r in table.rows]
        ax.barh(ys, means, xerr=errs, color=colors, alpha=0.8, label="camlab")
        pub = [(y, c.published) for y, c in zip(ys, cells, strict=True) if c.published]
        if pub:
            ax.scatter([p for _, p in pub], [y for y, _ in pub], marker="x", color="black",
                       zorder=3, label="published")  # fmt: skip
        ax.set_yticks(ys, [LABELS[r] for r in table.rows])
        ax.set_title(table.header(column).replace(", ", "\n"), fontsize=9)
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(table: Table, out_dir: Path) -> dict[str, Path]:
    """Writes wsol_table.md, wsol_table.csv and wsol_table.png into ``out_dir``."""
    return write_files(out_dir, "wsol_table", table.markdown(), table.csv_rows(),
                       lambda p: plot(table, p))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "inputs", nargs="+", type=Path, help="search folders, folders above them, search.json files"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("."), help="where to write wsol_table.{md,csv,png}"
    )
    args = parser.parse_args(argv)
    try:
        loaded = [read_search(p) for p in find_records(args.inputs)]
        searches = [s for s in loaded if s is not None]
        if not searches:
            raise CamlabError("No search record has a selected trial evaluated on test.")
        table = build_table(searches)
    except CamlabError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    paths = write(table, args.out)
    print(table.markdown())
    print("Wrote " + ", ".join(str(p) for p in paths.values()))
