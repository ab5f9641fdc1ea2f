#!/usr/bin/env python
"""CAM cost as a ratio to one forward pass, camlab vs pytorch-grad-cam vs torchcam (CPU).

    python benchmarks/bench_cam.py                      # resnet18 + resnet50, batch 32, 224 px
    python benchmarks/bench_cam.py --batch 8 --quick    # a fast check

Every method is timed end to end on the same batch (median of ``--repeats``), producing maps at
the input size, min-max normalized (what pytorch-grad-cam returns). Score-CAM costs one forward
per (image, channel), so it is timed on a few images only and reported per image; the peers'
Score-CAM on ``--peer-score-images`` images (default 1).
"""

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision

from camlab.cam import METHODS, compute_cam

PGC = {
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
    "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
}  # fmt: skip
TORCHCAM = {
    "cam": "CAM", "gradcam": "GradCAM", "gradcam++": "GradCAMpp", "xgradcam": "XGradCAM",
    "layercam": "LayerCAM", "scorecam": "ScoreCAM",
}  # fmt: skip


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ratio(fn: Callable[[], object], forward: Callable[[], object], repeats: int) -> float:
    """Median over repeats of time(fn) / time(forward), each pair timed back to back so that
    load from other processes on a shared machine cancels out."""
    fn()  # warm-up (allocator, oneDNN primitive cache, lazy imports)
    return statistics.median(timed(fn) / timed(forward) for _ in range(repeats))


def ours(model, x, method, closed_form=True):
    return lambda: compute_cam(
        model, x, method, output_size=x.shape[-2:], normalize=True, closed_form=closed_form
    )


def pgc_call(model, x, method):
    import pytorch_grad_cam

    cls = getattr(pytorch_grad_cam, PGC[method])

    def run():
        with cls(model=model, target_layers=[model.layer4]) as cam:
            cam(input_tensor=x, targets=None)
        model.zero_grad(set_to_none=True)  # it writes .grad; keep later runs comparable

    return run


def torchcam_call(model, x, method):
    import torchcam.methods

    cls = getattr(torchcam.methods, TORCHCAM[method])
    kwargs = {"fc_layer": "fc"} if method == "cam" else {}

    def run():
        with cls(model, "layer4", input_shape=tuple(x.shape[1:]), **kwargs) as cam:
            if method in ("cam", "scorecam"):
                with torch.inference_mode():
                    scores = model(x)
            else:
                scores = model(x)
            cam(class_idx=scores.argmax(1).tolist(), scores=scores)
        model.zero_grad(set_to_none=True)

    return run


def bench_model(name: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    forward()
    fwd = statistics.median(timed(forward) for _ in range(args.repeats))
    print(f"\n## {name}: batch {args.batch}, {args.size} px, forward {fwd * 1000:.0f} ms")
    print("| method | camlab | pytorch-grad-cam | torchcam |\n|---|---|---|---|")
    rows = [(m, True) for m in METHODS if m != "scorecam"]
    rows += [(m, False) for m in ("gradcam", "gradcam++")]
    for method, closed_form in [] if args.scorecam_only else rows:
        label = method if closed_form else f"{method} (autograd, closed_form=False)"
        cells = [median_ratio(ours(model, x, method, closed_form), forward, args.repeats)]
        if args.peers and closed_form:
            for table, call in ((PGC, pgc_call), (TORCHCAM, torchcam_call)):
                run = call(model, x, method) if method in table else None
                cells.append(median_ratio(run, forward, args.repeats) if run else None)
        else:
            cells += [None, None]
        text = " | ".join("-" if c is None else f"{c:.2f}x" for c in cells)
        print(f"| {label} | {text} |", flush=True)
    if name not in args.scorecam_models:
        return
    n, p = args.score_images, args.peer_score_images
    per_image_fwd = fwd / args.batch
    ours_s = timed(ours(model, x[:n], "scorecam")) / n
    cells = [f"{ours_s:.2f} s ({n} img)"]
    best = None
    if args.peers:
        for call in (pgc_call, torchcam_call):
            t = timed(call(model, x[:p], "scorecam")) / p
            best = t if best is None else min(best, t)
            cells.append(f"{t:.2f} s ({p} img)")
    print(f"| scorecam, seconds per image | {' | '.join(cells)} |")
    ratio = f"; fastest peer / camlab = {best / ours_s:.2f}x" if best else ""
    print(f"Score-CAM per image = {ours_s / per_image_fwd:.0f} single-image forwards{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-images", type=int, default=2, help="camlab Score-CAM images")
    parser.add_argument("--peer-score-images", type=int, default=1, help="peers' Score-CAM")
    parser.add_argument("--scorecam-models", nargs="*", default=["resnet18"])
    parser.add_argument("--no-peers", dest="peers", action="store_false")
    parser.add_argument("--scorecam-only", action="store_true", help="skip the ratio table")
    parser.add_argument("--quick", action="store_true", help="resnet18, 112 px, 1 repeat")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.quick:
        args.models, args.size, args.repeats, args.score_images = ["resnet18"], 112, 1, 1
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for name in args.models:
        bench_model(name, args)


if __name__ == "__main__":
    main()
