#!/usr/bin/env python
"""How much faster could Score-CAM's masked forwards get in fp32? Forward-pass variants, CPU.

    python benchmarks/bench_forward_variants.py            # resnet18 + resnet50, batch 16

Score-CAM's cost is one forward per (image, channel), so its speed is the forward's. This times
the same eval-mode torchvision model (random weights) on one batch: plain NCHW (the baseline),
channels-last (what ``camlab.cam.scorecam`` feeds), BatchNorm folded into the convolutions
(``torch.fx.experimental.optimization.fuse``) with and without channels-last, and TorchScript
``freeze`` + ``optimize_for_inference``. It prints each variant's speed-up over the baseline
(best of ``--repeats``, interleaved) and its largest logit difference from the baseline.
"""

import argparse
import copy
import time
import warnings

import torch
import torchvision
from torch.fx.experimental.optimization import fuse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's deprecation notes
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    for name in args.models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None).eval()
        x = torch.randn(args.batch, 3, args.size, args.size)
        cl = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            traced = torch.jit.trace(copy.deepcopy(model), x)
            variants = {
                "plain NCHW": (model, x),
                "channels-last": (copy.deepcopy(model).to(memory_format=torch.channels_last), cl),
                "BN folded": (fuse(copy.deepcopy(model)), x),
                "BN folded + channels-last": (
                    fuse(copy.deepcopy(model)).to(memory_format=torch.channels_last),
                    cl,
                ),
                "jit freeze + optimize_for_inference": (
                    torch.jit.optimize_for_inference(torch.jit.freeze(traced)),
                    x,
                ),
            }
            ref = model(x)
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.repeats):
                for label, (net, inp) in variants.items():
                    net(inp)  # warm-up: oneDNN primitives, TorchScript profiling runs
                    start = time.perf_counter()
                    net(inp)
                    times[label].append(time.perf_counter() - start)
            base = min(times["plain NCHW"])
            print(f"\n## {name}: plain forward {base * 1000:.0f} ms")
            print("| variant | speed-up | max logit diff |\n|---|---|---|")
            for label, (net, inp) in variants.items():
                diff = (net(inp) - ref).abs().max().item()
                print(f"| {label} | {base / min(times[label]):.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
