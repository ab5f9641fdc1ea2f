"""Side-by-side timing of the per-tau OpenCV oracle and camlab.metrics, with equality checks.

Usage: python benchmarks/bench_metrics.py [--n 200] [--size 224] [--intervals 0.001 0.01]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
import oracle  # noqa: E402

from camlab.metrics import PxAP, cam_thresholds, max_iou_curve  # noqa: E402


def realistic_maps(n: int, size: int, seed: int) -> tuple[list, list, list]:
    """Bicubic-upsampled random 7x7/14x14 CAMs; every fourth one with added pixel noise."""
    rng = np.random.default_rng(seed)
    maps, boxes, masks = [], [], []
    for i in range(n):
        k = 7 if i % 2 == 0 else 14
        cam = cv2.resize(rng.normal(size=(k, k)), (size, size), interpolation=cv2.INTER_CUBIC)
        if i % 4 == 3:
            cam = cam + 0.1 * (cam.max() - cam.min()) * rng.random((size, size))
        cam -= cam.min()
        cam /= cam.max()
        maps.append(cam)
        x0, y0 = rng.integers(0, size // 2, 2)
        x1, y1 = rng.integers(size // 2, size, 2)
        boxes.append(np.array([[x0, y0, x1, y1]]))
        masks.append(cam > rng.uniform(0.3, 0.7))
    return maps, boxes, masks


def box_scores(fn, maps, boxes, taus, multi) -> tuple[float, list]:
    start = time.perf_counter()
    scores = [fn(m, b, taus, multi) for m, b in zip(maps, boxes, strict=True)]
    return time.perf_counter() - start, scores


def pxap_both(maps, masks, d) -> tuple[float, float, bool]:
    start = time.perf_counter()
    ref = oracle.pxap(maps, masks, None, d)[0]
    t_oracle = time.perf_counter() - start
    batch, batch_masks = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks))
    start = time.perf_counter()
    metric = PxAP(cam_curve_interval=d)
    metric.update(batch, batch_masks)
    got = metric.compute()["pxap"].item()
    return t_oracle, time.perf_counter() - start, got == ref


def report(name: str, d: float, t_oracle: float, t_fast: float, n: int, same: bool) -> None:
    print(
        f"{name:<8} {d:>6} {t_oracle / n * 1e3:>9.2f} {t_fast / n * 1e3:>9.2f} "
        f"{t_oracle / t_fast:>6.1f}x  {same}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.001, 0.01])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    maps, boxes, masks = realistic_maps(args.n, args.size, args.seed)
    print(f"{args.n} maps {args.size}x{args.size}, one core; ms per image")
    print(f"{'metric':<8} {'d':>6} {'oracle':>9} {'fast':>9} {'ratio':>7}  identical")
    for d in args.intervals:
        taus = cam_thresholds(d)
        for name, multi in (("v1", False), ("V2", True)):
            t_o, ref = box_scores(oracle.image_scores, maps, boxes, taus, multi)
            t_f, got = box_scores(max_iou_curve, maps, boxes, taus, multi)
            same = all(np.array_equal(a, b) for a, b in zip(ref, got, strict=True))
            report(name, d, t_o, t_f, args.n, same)
        t_o, t_f, same = pxap_both(maps, masks, d)
        report("PxAP", d, t_o, t_f, args.n, same)


if __name__ == "__main__":
    main()
