"""End-to-end evaluation speed: ``camlab.evaluate`` against a pipeline that works as the reference
(clovaai/wsolevaluation) does, on the same generated CUB-layout JPEGs, in one run.

Usage: python benchmarks/bench_evaluate.py [--n 64] [--repeats 3] [--arch vgg16] [--batch 32]
                                           [--interval 0.001] [--data /tmp/camlab_bench_cub]
                                           [--variants fp32 nhwc bf16 bf16_nhwc]

Both score the CAM method's MaxBoxAccV2 (all contours, IoU 30/50/70) on the test split at one
thread (torch and OpenCV), data loaded in the main process, same random-weight checkpoint.

- reference-like: a classification pass (decode, resize, forward) and then a CAM pass (decode,
  resize, forward, CAM from the last features and the classifier's weights, OpenCV bicubic
  upsampling, min-max, then threshold + ``findContours`` + boxes at every threshold:
  ``tests/metrics/oracle.py``, the reference evaluator's call chain). Under ``torch.no_grad``,
  which the reference does not use (it is a little faster so).
- camlab: ``camlab.evaluate.evaluate`` on the composed ``eval.yaml`` (the test pass: one forward
  per batch for logits and CAMs, the compiled box sweep; plus v1 MaxBoxAcc, Loc and the per-image
  rows it always computes). Variants: ``fp32`` (the default), ``nhwc`` (``channels_last=true``),
  ``bf16`` (``trainer.precision=bf16-mixed``), ``bf16_nhwc`` (both).

Images/s counts the scored pass only (data loading to metric state), not imports, checkpoint
loading or the report files; their seconds are printed beside it. Runs alternate so machine load
hits all alike; the ratio is given per repeat and as the median with its spread.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "metrics"))  # the per-threshold OpenCV oracle
sys.path.insert(0, str(ROOT / "benchmarks"))

from cub_like import write_checkpoint, write_dataset  # noqa: E402
from oracle import image_scores  # noqa: E402

from camlab.classifier import GAPClassifier  # noqa: E402
from camlab.protocol import normalize_scoremap, rescale_boxes  # noqa: E402

CLOCK: dict[str, float] = defaultdict(float)


def timed(key: str, fn):
    """``fn`` adding its wall time to ``CLOCK[key]``."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            CLOCK[key] += time.perf_counter() - start

    return wrapper


def read_split(meta: Path) -> list[tuple[str, int, list[list[int]]]]:
    """(image id, label, boxes rescaled to 224 by the reference's expression) per image."""
    labels = dict(line.split(",") for line in (meta / "class_labels.txt").read_text().split())
    sizes = {}
    for line in (meta / "image_sizes.txt").read_text().split():
        image_id, w, h = line.split(",")
        sizes[image_id] = (int(w), int(h))
    boxes: dict[str, list] = defaultdict(list)
    for line in (meta / "localization.txt").read_text().split():
        image_id, *xyxy = line.split(",")
        box = torch.tensor([[float(v) for v in xyxy]])
        boxes[image_id] += rescale_boxes(box, sizes[image_id], 224).tolist()
    ids = (meta / "image_ids.txt").read_text().split()
    return [(i, int(labels[i]), boxes[i]) for i in ids]


class ReferenceLike:
    """The reference's evaluation pattern on a camlab ``GAPClassifier``."""

    def __init__(self, root: Path, ckpt: Path, interval: float, batch: int) -> None:
        self.images = root / "dataset" / "CUB"
        self.split = read_split(root / "metadata" / "CUB" / "test")
        self.model = GAPClassifier.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
        self.net = self.model.net
        self.taus = list(np.arange(0, 1, interval))
        self.batch = batch
        self.transform = transforms.Compose(
            [
                transforms.Resize((224, 224)),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def batches(self):
        for start in range(0, len(self.split), self.batch):
            part = self.split[start : start + self.batch]
            t0 = time.perf_counter()
            images = torch.stack(
                [self.transform(Image.open(self.images / i).convert("RGB")) for i, _, _ in part]
            )
            CLOCK["ref decode+resize"] += time.perf_counter() - t0
            yield images, part

    def run(self) -> float:
        """One evaluation; returns MaxBoxAccV2 (mean over IoU 30/50/70)."""
        correct = 0
        with torch.no_grad():
            for images, part in self.batches():  # classification pass
                t0 = time.perf_counter()
                logits = self.net(images)
                CLOCK["ref forward (classification)"] += time.perf_counter() - t0
                labels = torch.tensor([y for _, y, _ in part])
                correct += int((logits.argmax(1) == labels).sum())
            hits = np.zeros((3, len(self.taus)))
            for images, part in self.batches():  # CAM pass
                t0 = time.perf_counter()
                feats = self.net.features(images)
                weights = self.net.classifier.weight[[y for _, y, _ in part]]
                cams = (weights[:, :, None, None] * feats).mean(1).numpy()
                CLOCK["ref forward + CAM"] += time.perf_counter() - t0
                for cam, (_, _, boxes) in zip(cams, part, strict=True):
                    t0 = time.perf_counter()
                    up = cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
                    scoremap = normalize_scoremap(up)
                    CLOCK["ref resize+normalize"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    ious = image_scores(scoremap, boxes, self.taus, True)
                    for row, delta in enumerate((30, 50, 70)):
                        hits[row] += ious >= delta / 100
                    CLOCK["ref metric (contours per threshold)"] += time.perf_counter() - t0
        return float((hits.max(axis=1) * 100 / len(self.split)).mean())


class Camlab:
    """``camlab.evaluate.evaluate`` on the composed eval config, its parts timed."""

    def __init__(self, root: Path, ckpt: Path, interval: float, batch: int, out: Path) -> None:
        from hydra import compose, initialize_config_dir

        import camlab.evaluation.module as module
        from camlab.data.wsol import WSOLDataset
        from camlab.metrics.wsol import WSOLMetrics

        module.compute_cams = timed("forward + CAMs (one pass)", module.compute_cams)
        WSOLMetrics.update = timed("metric", WSOLMetrics.update)
        module.CamEvaluation._image_record = timed(
            "metric (per-image rows)", module.CamEvaluation._image_record
        )
        WSOLDataset.__getitem__ = timed("decode+resize", WSOLDataset.__getitem__)
        # The test pass: from the loader's creation (Lightning fetches a batch before the epoch's
        # first hook) to its last hook.
        start, end = module.CamEvaluation.test_dataloader, module.CamEvaluation.on_test_end
        module.CamEvaluation.test_dataloader = self._mark("start", start)
        module.CamEvaluation.on_test_end = self._mark("end", end)
        self.overrides = [
            f"ckpt_path={ckpt}", "data=cub", f"paths.data_dir={root}", "data.num_classes=200",
            "num_workers=0", f"batch_size={batch}", "cam.methods=[cam]", "metrics=[boxes]",
            f"cam.cam_curve_interval={interval}", "num_examples=1",
            "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        ]  # fmt: skip
        self.config_dir = str(ROOT / "src" / "camlab" / "configs")
        self.out = out
        self.compose, self.initialize = compose, initialize_config_dir
        self.marks: dict[str, float] = {}

    def _mark(self, name: str, fn):
        def wrapper(module_self):
            self.marks[name] = time.perf_counter()
            return fn(module_self)

        return wrapper

    def run(self, variant: str) -> tuple[float, float, float]:
        """One evaluation; returns (MaxBoxAccV2, scored-pass seconds, whole call seconds)."""
        from camlab.evaluate import evaluate

        extra = {"fp32": [], "nhwc": ["channels_last=true"]}
        extra["bf16"] = ["trainer.precision=bf16-mixed"]
        extra["bf16_nhwc"] = [*extra["bf16"], *extra["nhwc"]]
        with self.initialize(self.config_dir, version_base="1.3"):
            cfg = self.compose(
                "eval", [f"paths.output_dir={self.out / variant}", *self.overrides, *extra[variant]]
            )
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its results table, once per run
            summary = evaluate(cfg)
        total = time.perf_counter() - start
        scored = self.marks["end"] - self.marks["start"]
        return summary["methods"]["cam"]["max_box_acc_v2"], scored, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="test images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="vgg16")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--data", type=Path, default=Path("/tmp/camlab_bench_cub"))
    parser.add_argument("--variants", nargs="+", default=["fp32", "nhwc", "bf16", "bf16_nhwc"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("camlab").setLevel(logging.WARNING)

    root = write_dataset(args.data / f"n{args.n}", args.n)
    ckpt = root / f"{args.arch}.ckpt"
    if not ckpt.is_file():
        write_checkpoint(ckpt, args.arch, 200)
    reference = ReferenceLike(root, ckpt, args.interval, args.batch)
    camlab = Camlab(root, ckpt, args.interval, args.batch, args.data / "eval_out")
    image_scores(np.random.default_rng(0).random((224, 224)), [[0, 0, 9, 9]], [0.5], True)

    speed: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, float] = {}
    for repeat in range(args.repeats + 1):  # repeat 0 warms up (numba cache, allocator)
        for name in ["reference", *args.variants]:
            CLOCK.clear()
            start = time.perf_counter()
            if name == "reference":
                scores[name] = reference.run()
                seconds = total = time.perf_counter() - start
            else:
                scores[name], seconds, total = camlab.run(name)
            if repeat == 0:
                continue
            speed[name].append(args.n / seconds)
            totals[name].append(total)
            split = ", ".join(f"{k} {v / args.n * 1000:.0f}" for k, v in CLOCK.items())
            print(f"repeat {repeat} {name:9s} {args.n / seconds:6.2f} images/s ({split} ms/image)")

    print(f"\n{args.arch}, {args.n} images, 224 px, batch {args.batch}, interval {args.interval}, "
          "1 thread")  # fmt: skip
    print("| pipeline | MaxBoxAccV2 | images/s (median, min-max) | ratio to reference "
          "(median, min-max of the repeats) | whole call, s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for name, values in speed.items():
        ratios = [v / r for v, r in zip(values, speed["reference"], strict=True)]
        print(
            f"| {name} | {scores[name]:.4f} | {statistics.median(values):.2f} "
            f"({min(values):.2f}-{max(values):.2f}) | {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {statistics.median(totals[name]):.1f} |"
        )


if __name__ == "__main__":
    main()
