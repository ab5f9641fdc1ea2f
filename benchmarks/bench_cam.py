#!/usr/bin/env python
"""CAM cost as a ratio to one forward pass, camlab vs pytorch-grad-cam vs torchcam (CPU).

    python benchmarks/bench_cam.py                      # resnet18 + resnet50, batch 32, 224 px
    python benchmarks/bench_cam.py --batch 8 --quick    # a fast check

Every method is timed end to end on the same batch (median of ``--repeats``), producing maps at
the input size, min-max normalized (what pytorch-grad-cam returns). Score-CAM costs one forward
per (image, channel), so it is timed on a few images only and reported per image; the peers'
Score-CAM on ``--peer-score-images`` images (default 1).

``--per-image`` times the methods whose peers cost many forwards per image (Ablation-CAM with
real passes, SS-CAM, IS-CAM, FullGrad: pytorch-grad-cam resizes every channel of every bias
layer to the input, ~30 GB for a batch of 32) on ``--score-images`` images, ours and the peer's
on the same images, SS-CAM / IS-CAM with ``--samples`` noise samples / steps (default 2; the
cost is linear in it):

    python benchmarks/bench_cam.py --per-image --models resnet18 --score-images 1
"""

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision

from camlab.cam import CAM_METHODS, compute_cam

PGC = {
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
    "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
    "eigengradcam": "EigenGradCAM", "ablationcam": "AblationCAM", "fullgrad": "FullGrad",
}  # fmt: skip
TORCHCAM = {
    "cam": "CAM", "gradcam": "GradCAM", "gradcam++": "GradCAMpp", "xgradcam": "XGradCAM",
    "layercam": "LayerCAM", "scorecam": "ScoreCAM", "smoothgradcam++": "SmoothGradCAMpp",
    "sscam": "SSCAM", "iscam": "ISCAM",
}  # fmt: skip
# Timed per image (--per-image), not in the batch table: their peers run many passes per image.
PER_IMAGE = ("ablationcam", "sscam", "iscam", "fullgrad")
# Rows of the batch table beyond "every method with its defaults": (method, options).
OPTION_ROWS = [
    ("gradcam", {"closed_form": False}),
    ("gradcam++", {"closed_form": False}),
    ("smoothgradcam++", {"closed_form": False}),
    ("gradcam", {"eigen_smooth": True}),
    ("gradcam", {"aug_smooth": True}),
]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ratio(fn: Callable[[], object], forward: Callable[[], object], repeats: int) -> float:
    """Median over repeats of time(fn) / time(forward), each pair timed back to back so that
    load from other processes on a shared machine cancels out."""
    fn()  # warm-up (allocator, oneDNN primitive cache, lazy imports)
    return statistics.median(timed(fn) / timed(forward) for _ in range(repeats))


def ours(model, x, method, **options):
    return lambda: compute_cam(
        model, x, method, output_size=x.shape[-2:], normalize=True, **options
    )


def pgc_call(model, x, method, **call):
    import pytorch_grad_cam

    cls = getattr(pytorch_grad_cam, PGC[method])
    layers = [] if method == "fullgrad" else [model.layer4]

    def run():
        with cls(model=model, target_layers=layers) as cam:
            cam(input_tensor=x, targets=None, **call)
        model.zero_grad(set_to_none=True)  # it writes .grad; keep later runs comparable

    return run


def torchcam_call(model, x, method, **init):
    import torchcam.methods

    cls = getattr(torchcam.methods, TORCHCAM[method])
    kwargs = {"fc_layer": "fc"} if method == "cam" else {}

    def run():
        with cls(model, "layer4", input_shape=tuple(x.shape[1:]), **kwargs, **init) as cam:
            if method in ("cam", "scorecam", "sscam", "iscam"):
                with torch.inference_mode():
                    scores = model(x)
            else:
                scores = model(x)
            cam(class_idx=scores.argmax(1).tolist(), scores=scores)
        model.zero_grad(set_to_none=True)

    return run


def _label(method: str, options: dict) -> str:
    if not options:
        return method
    if options == {"closed_form": False}:
        how = "ablated passes" if method == "ablationcam" else "autograd"
        return f"{method} ({how}, closed_form=False)"
    return f"{method} ({', '.join(f'{k}={v}' for k, v in options.items())})"


def per_image(model, x, fwd_per_image: float, args: argparse.Namespace) -> None:
    """Ours vs the peer on the same ``--score-images`` images, seconds per image."""
    n = args.score_images
    xs = x[:n]
    print(
        f"\n{args.name}, seconds per image ({n} img; one forward of one image "
        f"{fwd_per_image * 1000:.0f} ms):"
    )
    print("| method | camlab | peer | peer / camlab |\n|---|---|---|---|")
    rows = [
        ("ablationcam", {"closed_form": False}, pgc_call, {}),
        ("sscam", {"num_samples": args.samples}, torchcam_call, {"num_samples": args.samples}),
        ("iscam", {"num_samples": args.samples}, torchcam_call, {"num_samples": args.samples}),
        ("fullgrad", {}, pgc_call, {}),
    ]
    for method, options, peer, peer_options in rows:
        # FullGrad takes a second: warm-up (oneDNN primitives of the backward) and median of
        # --repeats; the others take minutes, one timed run each (warm-up is negligible there).
        reps = args.repeats if method == "fullgrad" else 1

        def seconds(fn, reps=reps):
            if reps > 1:
                fn()
            return statistics.median(timed(fn) for _ in range(reps)) / n

        mine = seconds(ours(model, xs, method, **options))
        cells = [f"{mine:.2f} s", "-", "-"]
        if args.peers:
            theirs = seconds(peer(model, xs, method, **peer_options))
            name = "pytorch-grad-cam" if peer is pgc_call else "torchcam"
            cells[1:] = [f"{theirs:.2f} s ({name})", f"{theirs / mine:.2f}x"]
        print(f"| {_label(method, options)} | {' | '.join(cells)} |", flush=True)


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
    args.name = name
    if args.per_image:
        per_image(model, x, fwd / args.batch, args)
        return
    print("| method | camlab | pytorch-grad-cam | torchcam |\n|---|---|---|---|")
    rows = [(m, {}) for m in CAM_METHODS if m != "scorecam" and m not in PER_IMAGE]
    rows += OPTION_ROWS
    if args.methods:
        rows = [(m, o) for m, o in rows if m in args.methods]
    for method, options in [] if args.scorecam_only else rows:
        cells = [median_ratio(ours(model, x, method, **options), forward, args.repeats)]
        # The peers' closed_form=False equivalent is their default row; eigen / aug smoothing
        # are call options of pytorch-grad-cam.
        peer_call = {k: v for k, v in options.items() if k != "closed_form"}
        if args.peers and "closed_form" not in options:
            for table, call in ((PGC, pgc_call), (TORCHCAM, torchcam_call)):
                usable = method in table and (table is PGC or not peer_call)
                run = call(model, x, method, **peer_call) if usable else None
                cells.append(median_ratio(run, forward, args.repeats) if run else None)
        else:
            cells += [None, None]
        text = " | ".join("-" if c is None else f"{c:.2f}x" for c in cells)
        print(f"| {_label(method, options)} | {text} |", flush=True)
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
    parser.add_argument("--per-image", action="store_true", help="the per-image table only")
    parser.add_argument("--methods", nargs="*", help="only these rows of the batch table")
    parser.add_argument("--samples", type=int, default=2, help="SS-CAM / IS-CAM, --per-image")
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
