"""What an evaluation run writes: metrics.json numbers, per_image.csv, plots and a table."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def method_metrics(out: dict[str, Any], deltas: Sequence[int]) -> dict[str, Any]:
    """Flat numbers of one method from ``CamEvaluation.results["methods"][method]``."""
    metrics: dict[str, float] = {}
    if "v2" in out:
        v2, v1, loc = out["v2"], out["v1"], out["loc"]
        metrics["max_box_acc_v2"] = float(v2["max_box_acc"])
        for d in deltas:
            metrics[f"max_box_acc_v2@{d}"] = float(v2[f"max_box_acc@{d}"])
            metrics[f"best_threshold_v2@{d}"] = float(v2[f"best_threshold@{d}"])
        metrics["max_box_acc"] = float(v1["max_box_acc"])
        metrics["best_threshold_v1"] = float(v1["best_threshold@50"])
        metrics.update({k: float(v) for k, v in loc.items() if k.endswith("_loc")})
    if "pxap" in out:
        metrics["pxap"] = float(out["pxap"]["pxap"])
    # Average Drop / Increase (%), deletion / insertion AUC, ROAD (+ its curves), pointing game
    metrics.update(out.get("faithfulness", {}))
    if "sanity" in out:  # per layer similarities (camlab.evaluation.sanity), kept nested
        metrics["sanity"] = out["sanity"]
    if "quantus" in out:  # camlab.metrics.explanation, kept nested
        metrics["quantus"] = out["quantus"]
    return metrics


def calibrated_metrics(
    test: dict[str, Any], val: dict[str, Any], deltas: Sequence[int]
) -> dict[str, float]:
    """Test box accuracy at the thresholds that maximise it on the validation split.

    The honest protocol: the threshold is a hyper-parameter, chosen on val, reported on test.
    Both curves share one threshold grid, so the val argmax indexes the test curve.
    """
    taus = test["v2"]["thresholds"].numpy()
    v2_idx = val["v2"]["curve"].numpy().argmax(axis=1)
    v2_acc = test["v2"]["curve"].numpy()[np.arange(len(deltas)), v2_idx]
    v1_idx = int(val["v1"]["curve"].numpy()[0].argmax())
    out = {"box_acc_v2": float(np.average(v2_acc))}
    for i, d in enumerate(deltas):
        out[f"box_acc_v2@{d}"] = float(v2_acc[i])
        out[f"threshold_v2@{d}"] = float(taus[v2_idx[i]])
    out["box_acc"] = float(test["v1"]["curve"].numpy()[0, v1_idx])
    out["threshold_v1"] = float(taus[v1_idx])
    return out


def write_per_image(
    path: Path,
    rows: list[dict[str, Any]],
    methods: Sequence[str],
    ids: dict[int, str] | None,
    class_names: Sequence[str],
    dataset_tau: dict[str, int],
) -> None:
    """One line per (image, method): id, label, prediction, best IoU and its box, and the IoU
    at the data-set-wide threshold ``dataset_tau[method]`` (an index into the grid)."""
    fields = [
        "method", "index", "id", "label", "prediction", "probability", "correct", "best_iou",
        "best_threshold", "box_x0", "box_y0", "box_x1", "box_y1", "iou_at_dataset_threshold",
    ]  # fmt: skip
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for method in methods:
            for row in rows:
                rec = row.get(method)
                if rec is None:
                    continue
                x0, y0, x1, y1 = rec["box"]
                writer.writerow(
                    {
                        "method": method,
                        "index": row["index"],
                        "id": ids[row["index"]] if ids is not None else row["index"],
                        "label": class_names[row["label"]],
                        "prediction": class_names[row["prediction"]],
                        "probability": f"{row['probability']:.4f}",
                        "correct": int(row["label"] == row["prediction"]),
                        "best_iou": f"{rec['best_iou']:.4f}",
                        "best_threshold": f"{rec['best_threshold']:.4f}",
                        "box_x0": x0, "box_y0": y0, "box_x1": x1, "box_y1": y1,
                        "iou_at_dataset_threshold": f"{rec['curve'][dataset_tau[method]]:.4f}",
                    }
                )  # fmt: skip


def plot_box_curves(path: Path, method: str, out: dict[str, Any], deltas: Sequence[int]) -> None:
    """Box accuracy against the CAM threshold, one line per IoU threshold (and v1)."""
    taus = out["v2"]["thresholds"].numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, d in enumerate(deltas):
        curve = out["v2"]["curve"].numpy()[i]
        ax.plot(taus, curve, label=f"IoU >= {d / 100:.1f} (max {curve.max():.1f})")
    v1 = out["v1"]["curve"].numpy()[0]
    ax.plot(taus, v1, "k--", label=f"v1, largest box, IoU >= 0.5 (max {v1.max():.1f})")
    ax.set(xlabel="CAM threshold", ylabel="box accuracy (%)", ylim=(0, 100))
    ax.set_title(f"{method}: MaxBoxAccV2 = {float(out['v2']['max_box_acc']):.1f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pr_curve(path: Path, method: str, pxap: dict[str, Any]) -> None:
    """PxAP's pixel precision-recall curve."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(pxap["recall"].numpy(), pxap["precision"].numpy())
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"{method}: PxAP = {float(pxap['pxap']):.1f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(metrics: dict[str, dict[str, float]], columns: Sequence[str]) -> str:
    """A Markdown table: one row per method, the given metric columns (missing ones blank)."""
    present = [c for c in columns if any(c in m for m in metrics.values())]
    lines = ["| method | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for method, values in metrics.items():
        cells = [f"{values[c]:.2f}" if c in values else "" for c in present]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sanity(path: Path, method: str, sanity: dict[str, Any]) -> None:
    """Similarity to the trained model's maps against the randomised depth (top down), one
    line per measure; cascading solid, independent dashed; permuted labels as dotted levels."""
    layers = sanity["layers"]
    depth = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(layers) + 3), 4.5))
    colors = {}
    for mode, style in (("cascading", "-o"), ("independent", "--s")):
        for measure, values in sanity.get(mode, {}).items():
            color = colors.get(measure)
            (line,) = ax.plot(depth, values, style, color=color, ms=4, label=f"{measure}, {mode}")
            colors[measure] = line.get_color()
    for measure, color in colors.items():
        if measure in sanity.get("labels", {}):
            ax.axhline(sanity["labels"][measure], color=color, ls=":", lw=1,
                       label=f"{measure}, permuted labels")  # fmt: skip
    ticks = [name.split("backbone.")[-1].removeprefix("net.") for name in layers]
    ax.set_xticks(depth, ticks, rotation=45, ha="right")
    ax.set(xlabel="randomised down to (top layer first)", ylabel="similarity to trained maps")
    ax.set_ylim(min(-0.2, ax.get_ylim()[0]), 1.05)
    ax.axhline(0, color="k", lw=0.5)
    verdict = ""
    if "passes" in sanity:
        measure = sanity["pass_measure"]
        full = sanity["full_randomization"][measure]
        verdict = f": {'passes' if sanity['passes'] else 'FAILS'} ({measure} {full:.2f})"
    ax.set_title(f"{method} sanity check, {sanity['num_images']} images{verdict}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_sanity_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the sanity checks: per method, each similarity with every layer
    randomised (and with permuted labels), and whether the method passes."""
    lines = []
    for method, values in metrics.items():
        sanity = values.get("sanity")
        if sanity is None or "full_randomization" not in sanity:
            continue
        full, labels = sanity["full_randomization"], sanity.get("labels", {})
        cells = [f"{full[m]:.2f}" for m in full]
        cells += [f"{labels[m]:.2f}" if m in labels else "" for m in full]
        cells.append("yes" if sanity["passes"] else "no")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
        names = list(full)
    if not lines:
        return ""
    head = [f"{m} (all random)" for m in names] + [f"{m} (labels)" for m in names] + ["passes"]
    return "\n".join(["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
                     + lines)  # fmt: skip


def format_quantus_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the Quantus-parity metrics: a row per metric, a column per method;
    a cell's NaN images (``<name>_nan``, left out of its mean) in brackets."""
    methods = [m for m, values in metrics.items() if "quantus" in values]
    if not methods:
        return ""
    names = [
        n for n in dict.fromkeys(n for m in methods for n in metrics[m]["quantus"])
        if not n.endswith("_nan")
    ]  # fmt: skip
    lines = ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name in names:
        cells = []
        for method in methods:
            values = metrics[method]["quantus"]
            nan = values.get(f"{name}_nan")
            cell = f"{values.get(name, float('nan')):.4g}"
            cells.append(f"{cell} ({nan} NaN)" if nan else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
