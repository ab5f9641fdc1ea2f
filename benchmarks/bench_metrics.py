"""Side-by-side timing of the per-tau OpenCV oracle and camlab.metrics, with equality checks.

Usage: python benchmarks/bench_metrics.py [--n 200] [--size 224] [--intervals 0.001 0.01]
                                          [--clock wall|cpu]

Box metrics are timed image by image, oracle and camlab back to back, so load changes on a
shared machine hit both sides alike. Everything is warmed up first (numba compiles or loads
its cache on the first call; that one-off time is printed separately). ``--clock cpu`` uses
this process's CPU time instead of wall time, steadier when other jobs share the cores.
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

IMAGENET_TEST = 50_000
clock = time.perf_counter


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


def box_scores(maps, boxes, taus, multi) -> tuple[float, float, bool]:
    """Seconds for the oracle and for camlab over all maps, and whether every curve is equal."""
    t_oracle = t_fast = 0.0
    same = True
    for m, b in zip(maps, boxes, strict=True):
        start = clock()
        ref = oracle.image_scores(m, b, taus, multi)
        mid = clock()
        got = max_iou_curve(m, b, taus, multi)
        t_oracle, t_fast = t_oracle + mid - start, t_fast + clock() - mid
        same &= bool(np.array_equal(ref, got))
    return t_oracle, t_fast, same


def pxap_both(maps, masks, d, repeats: int = 3) -> tuple[float, float, bool]:
    """Best-of-repeats seconds for the oracle and for one PxAP update + compute."""
    batch, batch_masks = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks))
    t_oracle = t_fast = float("inf")
    for _ in range(repeats):
        start = clock()
        ref = oracle.pxap(maps, masks, None, d)[0]
        mid = clock()
        metric = PxAP(cam_curve_interval=d)
        metric.update(batch, batch_masks)
        got = metric.compute()["pxap"].item()
        t_oracle, t_fast = min(t_oracle, mid - start), min(t_fast, clock() - mid)
    return t_oracle, t_fast, got == ref


def warm_up(maps, boxes, masks) -> float:
    """First calls of every compiled path (numba compile or cache load); returns seconds."""
    start = clock()
    for multi in (False, True):
        max_iou_curve(maps[0], boxes[0], cam_thresholds(0.01), multi)
    PxAP(cam_curve_interval=0.01).update(
        torch.from_numpy(maps[0][None]), torch.from_numpy(masks[0][None])
    )
    return clock() - start


def report(name: str, d: float, t_oracle: float, t_fast: float, n: int, same: bool) -> None:
    per_oracle, per_fast = t_oracle / n * 1e3, t_fast / n * 1e3
    print(
        f"| {name} | {d} | {per_oracle:.2f} | {per_fast:.2f} | {t_oracle / t_fast:.1f}x "
        f"| {'yes' if same else 'NO'} | {per_oracle * IMAGENET_TEST / 60e3:.1f} min "
        f"| {per_fast * IMAGENET_TEST / 60e3:.2f} min |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.001, 0.01])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    maps, boxes, masks = realistic_maps(args.n, args.size, args.seed)
    print(f"warm-up (numba compile or cache load): {warm_up(maps, boxes, masks):.2f} s")
    print(f"{args.n} maps {args.size}x{args.size}, one core, {args.clock} clock; ms per image")
    print(
        "| metric | d | oracle | camlab | speed-up | identical "
        f"| oracle, {IMAGENET_TEST} images | camlab, {IMAGENET_TEST} images |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for d in args.intervals:
        taus = cam_thresholds(d)
        for name, multi in (("MaxBoxAcc v1", False), ("MaxBoxAccV2", True)):
            t_o, t_f, same = box_scores(maps, boxes, taus, multi)
            report(name, d, t_o, t_f, args.n, same)
        t_o, t_f, same = pxap_both(maps, masks, d)
        report("PxAP", d, t_o, t_f, args.n, same)


if __name__ == "__main__":
    main()
