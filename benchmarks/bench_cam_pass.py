"""The evaluation's CAM step: one forward per method (the old path, and the reference's pattern of a
classification pass then a CAM pass) against ``compute_cams``'s one forward for all, same run.

Usage: python benchmarks/bench_cam_pass.py [--arch resnet50] [--size 224] [--batch 8]
                                           [--methods cam gradcam] [--repeats 5] [--threads 1]

Both paths are checked equal bit for bit first (logits and every map), then timed back to back,
alternating, so load changes on a shared machine hit both alike; prints the median ratio and its
spread over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from camlab.cam import compute_cam, compute_cams
from camlab.classifier import GAPClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["cam", "gradcam"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GAPClassifier(args.arch, 200, hires_cam=True, image_size=args.size).eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 200, (args.batch,))

    def separate():
        with torch.inference_mode():
            logits = model(images).float()
            return logits, {m: compute_cam(model, images, m, targets=labels) for m in args.methods}

    def one_pass():
        with torch.inference_mode():
            return compute_cams(model, images, args.methods, targets=labels)

    (a_logits, a_maps), (b_logits, b_maps) = separate(), one_pass()
    same = torch.equal(a_logits, b_logits) and all(
        torch.equal(a_maps[m], b_maps[m]) for m in args.methods
    )
    times: dict[str, list[float]] = {"separate": [], "one_pass": []}
    for _ in range(args.repeats):
        for name, fn in (("separate", separate), ("one_pass", one_pass)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ratios = [s / o for s, o in zip(times["separate"], times["one_pass"], strict=True)]
    per_image = {k: statistics.median(v) / args.batch for k, v in times.items()}
    print(
        f"{args.arch} {args.size}px, batch {args.batch}, methods {args.methods}, "
        f"{args.threads} thread(s), {args.repeats} repeats; identical: {same}\n"
        f"separate passes {per_image['separate'] * 1000:.0f} ms/image, "
        f"one pass {per_image['one_pass'] * 1000:.0f} ms/image: "
        f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
