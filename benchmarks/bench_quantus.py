#!/usr/bin/env python
"""Quantus-parity metrics: camlab vs Quantus 0.6.0 on the same model, images, maps and seed.

    python benchmarks/bench_quantus.py                      # resnet18, 16 digits of 56 px, CPU
    python benchmarks/bench_quantus.py --only pixel_flipping,irof --n 32
    python benchmarks/bench_quantus.py --quick              # 4 digits of 28 px, a fast check

Real MNIST digits (the embedded ones, resized, one channel: Quantus 0.6.0's IROF asserts on
more) through a randomly initialised torchvision network (no pretrained weights offline; its
first convolution made single-channel), explained by CAM (score maps in [0, 1] at the input
size; Grad-CAM of random weights is all zero on some images, whose NaN correlations Quantus's
batched Spearman cannot take); the robustness and randomisation metrics re-explain with
the same CAM, given to Quantus as its ``explain_func``. Each metric runs once per library on the
same inputs, NumPy's generator seeded alike before each, after a warm-up of both on three images.
Prints each time, the ratio Quantus / camlab measured in this run, and the largest difference
between the two libraries' per-image numbers.

Quantus's defaults are sized for 224-px ImageNet; the options below (the same for both
libraries) keep Quantus's side to minutes: fewer noise samples for the robustness metrics, one
row of pixels per step for the pixel-flipping games.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from camlab.cam import compute_cam
from camlab.data.mnist import load_embedded_mnist
from camlab.metrics import cams_to_scoremaps
from camlab.metrics.explanation import all_specs


def bench_options(size: int) -> dict[str, dict]:
    """Options over the metrics' defaults, the same for both libraries (see the docstring)."""
    return {
        "pixel_flipping": {"features_in_step": size},
        "monotonicity_correlation": {"features_in_step": size, "nr_samples": 10},
        "max_sensitivity": {"nr_samples": 10},
        "avg_sensitivity": {"nr_samples": 10},
        "local_lipschitz_estimate": {"nr_samples": 10},
        "random_logit": {"num_classes": 10},
    }


def digits(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, 1, size, size]`` in [0, 1] and labels: the embedded digits of a fixed shuffle."""
    pool, labels = load_embedded_mnist()["all"]
    index = np.random.RandomState(0).permutation(len(pool))[:n]
    x = torch.from_numpy(pool[index].astype(np.float32) / 255.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, torch.from_numpy(labels[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--n", type=int, default=16, help="images")
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated metric names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 digits of 28 px")
    args = parser.parse_args()
    if args.quick:
        args.n, args.size = 4, 28
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import quantus

    # Quantus 0.6.0's calculate_auc calls np.trapz, which NumPy 2.4 removed (same rule).
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(num_classes=10).eval()
    # One input channel, as the digits are.
    first = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    conv = model.get_submodule(first)
    parent, attr = model, first
    if "." in first:
        parent, attr = model.get_submodule(first.rsplit(".", 1)[0]), first.rsplit(".", 1)[1]
    setattr(parent, attr, torch.nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride,
                                          conv.padding, bias=conv.bias is not None))  # fmt: skip
    x, labels = digits(args.n, args.size)

    def explain(net, images, targets):
        cams = compute_cam(net, images, "cam", targets=targets)
        return cams_to_scoremaps(cams, tuple(images.shape[-2:])).to(torch.float32)

    def quantus_explain(model, inputs, targets, **kwargs):
        images = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return explain(model, images, torch.as_tensor(np.asarray(targets)))[:, None].numpy()

    maps = explain(model, x, labels)
    masks = x[:, 0] > 0.5  # the digit's own pixels
    specs = all_specs()
    names = [n for n in args.only.split(",") if n] or list(specs)
    overrides = bench_options(args.size)
    print(
        f"{args.arch}, {args.n} digits x {args.size} px, {args.threads} threads, wall clock, "
        f"torch {torch.__version__}, quantus {quantus.__version__}"
    )
    print(f"{'metric':<26} {'quantus s':>10} {'camlab s':>9} {'ratio':>7} {'max |diff|':>11}")

    def run_both(spec, options, k):
        sub = slice(0, k)
        kwargs = spec.quantus_kwargs(options)
        metric = getattr(quantus, spec.quantus)(
            disable_warnings=True, display_progressbar=False, **kwargs
        )
        np.random.seed(args.seed)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            theirs = metric(
                model=model, x_batch=x[sub].numpy(), y_batch=labels[sub].numpy(),
                a_batch=maps[sub, None].numpy(),
                s_batch=masks[sub, None].numpy().astype(np.float32),
                explain_func=quantus_explain, device="cpu", batch_size=args.n,
            )  # fmt: skip
        t_quantus = time.perf_counter() - start
        start = time.perf_counter()
        ours = spec.fn(
            model, x[sub], maps[sub], labels[sub], masks=masks[sub], explain=explain,
            seed=args.seed, **options,
        )  # fmt: skip
        t_camlab = time.perf_counter() - start
        theirs = np.asarray(theirs, np.float64)
        if theirs.ndim == 2:  # Quantus gives region perturbation's / selectivity's curves only:
            theirs = np.trapezoid(theirs, axis=1)  # camlab's score is their trapezoid, dx = 1
        return t_quantus, t_camlab, theirs, ours.numpy()

    for name in names:
        spec = specs[name]
        options = dict(spec.options)
        options.update({k: v for k, v in overrides.get(name, {}).items() if k in options})
        try:
            run_both(spec, options, 3)  # warm-up (Quantus's batched Spearman fails on 2 images)
            t_quantus, t_camlab, theirs, ours = run_both(spec, options, args.n)
        except Exception as err:  # a Quantus crash on these inputs: say so, go on
            print(f"{name:<26} failed: {type(err).__name__}: {err}")
            continue
        diff = np.nanmax(np.abs(theirs - ours)) if np.isfinite(theirs).any() else float("nan")
        print(
            f"{name:<26} {t_quantus:>10.3f} {t_camlab:>9.3f} {t_quantus / t_camlab:>6.1f}x "
            f"{diff:>11.2e}"
        )


if __name__ == "__main__":
    main()
