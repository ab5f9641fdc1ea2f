#!/usr/bin/env python
"""Faithfulness metrics: camlab vs pytorch-grad-cam / torchcam on the same model, batch and maps.

    python benchmarks/bench_faithfulness.py                          # resnet18, 8 x 224 px, CPU
    python benchmarks/bench_faithfulness.py --device cuda --batch 32
    python benchmarks/bench_faithfulness.py --quick                  # 4 x 112 px, a fast check

Every metric runs once per library after a warm-up on one image, on the same randomly
initialised torchvision model (no pretrained weights offline), the same images and the same
Grad-CAM score maps (``camlab.cam.compute_cam`` + ``cams_to_scoremaps``), targets = the
predicted classes, softmax scores. The script prints each time, the ratio peer / camlab
measured in this run, and the largest difference between the two libraries' numbers:

- Average Drop / Increase: pytorch-grad-cam's ``CamMultImageConfidenceChange`` (one call gives
  both) and torchcam's ``ClassificationMetric`` vs ``AverageDropIncrease``;
- ROAD, MoRF + LeRF averaged over 9 percentiles (what ``ROADCombined`` computes):
  pytorch-grad-cam's ``AveragerAcrossThresholds`` of ``Remove*RelevantFirst`` with a noise-free
  ``NoisyLinearImputer`` vs ``ROAD(noise=0)`` (the noise costs nothing and is random, so the
  noise-free variants make the numbers comparable);
- deletion / insertion (zeros baseline): torchcam's ``DeletionInsertionMetric`` (pytorch-grad-cam
  has none) vs ``DeletionInsertion``;
- the pointing game: camlab only (neither peer implements it).

``--clock cpu`` reports this process's CPU time, steadier than wall time on a shared machine
(with more than one thread it adds up the threads' time).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
import warnings

import numpy as np
import torch
import torchvision

from camlab.cam import compute_cam
from camlab.metrics import (
    ROAD,
    AverageDropIncrease,
    DeletionInsertion,
    PointingGame,
    cams_to_scoremaps,
    confidence_scores,
    deletion_insertion_curves,
    road_scores,
)

PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


class GivenMaps:
    """torchcam extractor returning fixed maps, so torchcam scores the same inputs."""

    def __init__(self, model, maps):
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        return contextlib.nullcontext()


def clock(kind: str, device: torch.device):
    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.process_time() if kind == "cpu" else time.perf_counter()

    return now


def timed(now, fn):
    start = now()
    out = fn()
    return now() - start, out


def peer_road(model, x, maps_np, targets):
    """MoRF and LeRF averages of pytorch-grad-cam (ROADCombined's work), noise-free."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        AveragerAcrossThresholds,
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    out = []
    for remover in (RemoveMostRelevantFirst, RemoveLeastRelevantFirst):

        def metric(p, remover=remover):
            return PerturbationConfidenceMetric(remover(p, NoisyLinearImputer(noise=0.0)))

        out.append(AveragerAcrossThresholds(metric, PERCENTILES)(x, maps_np, targets, model))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20, help="deletion / insertion steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--quick", action="store_true", help="4 images of 112 px")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size = 4, 112
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    now = clock(args.clock, device)

    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    from torchcam.metrics import ClassificationMetric, DeletionInsertionMetric

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(num_classes=10).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        labels = model(x).argmax(1)
    cams = compute_cam(model, x, "gradcam", targets=labels)
    maps = cams_to_scoremaps(cams, (args.size, args.size)).float().to(device)
    maps_np = maps.cpu().numpy()
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in labels]
    softmax = functools.partial(torch.softmax, dim=-1)
    boxes = torch.tensor([[[args.size // 4, args.size // 4, args.size // 2, args.size // 2]]])
    boxes = boxes.expand(args.batch, 1, 4)
    print(
        f"{args.arch}, {args.batch} x {args.size} px, {device}, {args.threads} threads, "
        f"{args.clock} clock, torch {torch.__version__}"
    )

    # warm-up on one image: allocator, oneDNN / cuDNN primitives, lazy imports
    one = slice(0, 1)
    CamMultImageConfidenceChange()(x[one], maps_np[one], targets[one], model)
    road_scores(model, x[one], maps[one], labels[one], [50], noise=0.0)
    peer_road(model, x[one], maps_np[one], targets[one])
    deletion_insertion_curves(model, x[one], maps[one], labels[one], steps=2)

    rows = []

    # Average Drop / Increase in Confidence
    t_pgc, change = timed(now, lambda: CamMultImageConfidenceChange()(x, maps_np, targets, model))

    def torchcam_drop():
        metric = ClassificationMetric(GivenMaps(model, maps), softmax)
        metric.update(x, class_idx=labels.tolist())
        return metric.summary()

    t_tc, tc_drop = timed(now, torchcam_drop)

    def camlab_drop():
        metric = AverageDropIncrease().to(device)
        metric.update(model, x, maps, labels)
        return metric.compute()

    t_ours, ours_drop = timed(now, camlab_drop)
    with torch.no_grad():
        logits = model(x)

    def camlab_drop_reusing_logits():  # as evaluate.py does: one forward pass, not two
        metric = AverageDropIncrease().to(device)
        metric.update(model, x, maps, labels, logits=logits)
        return metric.compute()

    t_ours_logits, _ = timed(now, camlab_drop_reusing_logits)
    base, masked = confidence_scores(model, x, maps, labels)
    diff = float(np.abs((masked - base).cpu().numpy() - change).max())
    diff_tc = abs(float(ours_drop["average_drop"]) - 100 * tc_drop["avg_drop"]) / 100
    rows.append(("Average Drop + Increase", "pytorch-grad-cam", t_pgc, t_ours, diff))
    rows.append(("Average Drop + Increase", "torchcam", t_tc, t_ours, diff_tc))
    rows.append(("Average Drop + Increase, logits given", "pytorch-grad-cam", t_pgc,
                 t_ours_logits, diff))  # fmt: skip

    # ROAD (MoRF + LeRF, 9 percentiles)
    t_pgc_road, (morf, lerf) = timed(now, lambda: peer_road(model, x, maps_np, targets))

    def camlab_road():
        metric = ROAD(PERCENTILES, noise=0.0).to(device)
        metric.update(model, x, maps, labels)
        return metric.compute()

    t_ours_road, _ = timed(now, camlab_road)
    b, my_morf, my_lerf = road_scores(model, x, maps, labels, PERCENTILES, noise=0.0)
    diff = max(
        float(np.abs((my_morf - b).mean(0).cpu().numpy() - morf).max()),
        float(np.abs((my_lerf - b).mean(0).cpu().numpy() - lerf).max()),
    )
    rows.append(("ROAD MoRF + LeRF (9 percentiles)", "pytorch-grad-cam", t_pgc_road,
                 t_ours_road, diff))  # fmt: skip

    # Deletion / insertion
    def torchcam_del():
        metric = DeletionInsertionMetric(GivenMaps(model, maps), softmax, steps=args.steps)
        metric.update(x, class_idx=labels.tolist())
        return metric.summary()

    t_tc_del, tc_del = timed(now, torchcam_del)

    def camlab_del():
        metric = DeletionInsertion(args.steps, insertion_baseline="zeros").to(device)
        metric.update(model, x, maps, labels)
        return metric.compute()

    t_ours_del, ours_del = timed(now, camlab_del)
    diff = max(abs(float(ours_del[k]) - tc_del[k]) for k in ("deletion_auc", "insertion_auc"))
    rows.append((f"deletion + insertion ({args.steps} steps)", "torchcam", t_tc_del,
                 t_ours_del, diff))  # fmt: skip

    # Pointing game (no peer)
    def camlab_pointing():
        metric = PointingGame(10).to(device)
        metric.update(maps, labels, boxes.to(device))
        return metric.compute()

    t_point, _ = timed(now, camlab_pointing)

    print("\n| metric | peer | peer (s) | camlab (s) | peer / camlab | max abs difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, peer, t_peer, t_mine, d in rows:
        print(
            f"| {name} | {peer} | {t_peer:.2f} | {t_mine:.2f} | {t_peer / t_mine:.1f}x | {d:.1e} |"
        )
    print(f"| pointing game | - | - | {t_point:.4f} | - | - |")
    t_pgc_all, t_ours_all = t_pgc + t_pgc_road, t_ours + t_ours_road
    print(
        f"\npytorch-grad-cam's metrics together (Average Drop + Increase, ROAD): "
        f"{t_pgc_all:.2f} s vs camlab {t_ours_all:.2f} s, {t_pgc_all / t_ours_all:.1f}x"
    )


if __name__ == "__main__":
    main()
