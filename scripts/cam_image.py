#!/usr/bin/env python
"""Writes CAM overlays (top-k classes, with names and probabilities) for image files.

    python scripts/cam_image.py dog.jpg --arch resnet50 --method gradcam --topk 3 --out cams/
    python scripts/cam_image.py img.png --checkpoint runs/best.ckpt --method cam

Models: a camlab checkpoint (``GAPClassifier``) or a torchvision model with its pretrained
ImageNet weights (``--no-pretrained``: random weights, for offline tests).
"""

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import torch
import torchvision
from torch import Tensor, nn

from camlab.cam import CAM_METHODS, compute_cam
from camlab.cam.overlay import render_cams
from camlab.errors import CamlabError
from camlab.imagenet import IMAGENET_MEAN, IMAGENET_STD


class LoadedModel:
    """A classifier in eval mode plus what is needed to feed it and name its classes."""

    def __init__(self, model, mean, std, class_names, in_channels, image_size) -> None:
        self.model, self.mean, self.std = model, list(mean), list(std)
        self.class_names, self.in_channels, self.image_size = class_names, in_channels, image_size


def _hparam(hparams, key: str):
    """A value from (possibly nested) hparams, or None."""
    if key in hparams and hparams[key] is not None:
        return hparams[key]
    for value in hparams.values():
        if isinstance(value, dict) and (found := _hparam(value, key)) is not None:
            return found
    return None


def load_checkpoint(path: str, device: str) -> LoadedModel:
    """Loads a ``GAPClassifier`` checkpoint; missing data hparams fall back to ImageNet's."""
    from camlab.classifier import GAPClassifier

    # Read with weights_only=True (a missing or bad file raises CamlabError); the state dict
    # holds every weight, so nothing is downloaded.
    module = GAPClassifier.load_from_checkpoint(path, map_location=device)
    hp = dict(module.hparams)
    num_classes = int(_hparam(hp, "num_classes") or module.gap_classifier.out_features)
    in_channels = int(_hparam(hp, "in_channels") or 3)
    gray = in_channels == 1
    default_mean, default_std = ([0.5], [0.5]) if gray else (IMAGENET_MEAN, IMAGENET_STD)
    names = _hparam(hp, "class_names") or [str(i) for i in range(num_classes)]
    return LoadedModel(
        module.eval(),
        _hparam(hp, "mean") or default_mean,
        _hparam(hp, "std") or default_std,
        list(names),
        in_channels,
        _hparam(hp, "image_size"),
    )


def load_torchvision(name: str, pretrained: bool, device: str) -> LoadedModel:
    """A torchvision classifier with ImageNet class names (and weights unless ``pretrained``)."""
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as err:
        valid = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
        raise CamlabError(f"Unknown torchvision model '{name}'. Valid choices: {valid}.") from err
    model: nn.Module
    if pretrained:
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except Exception as err:  # URLError, OSError, ...: offline or corrupt download
            raise CamlabError(
                f"Could not load the pretrained weights {weights} for '{name}' ({err}). Without "
                f"internet, put the file at {cached} (download {weights.url} elsewhere; "
                "TORCH_HOME moves the cache), or pass --no-pretrained for random weights."
            ) from err
    else:
        model = torchvision.models.get_model(name, weights=None)
    size = weights.transforms().crop_size[0]
    meta = weights.meta["categories"]
    return LoadedModel(model.to(device).eval(), IMAGENET_MEAN, IMAGENET_STD, meta, 3, size)


def load_image(path: str, in_channels: int, size: int) -> Tensor:
    """Image file -> float ``[C, size, size]`` in [0, 1]."""
    if not os.path.isfile(path):
        raise CamlabError(f"Image '{path}' does not exist.")
    gray = in_channels == 1
    array = cv2.imread(path, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if array is None:
        raise CamlabError(f"Could not decode image '{path}' (not an image OpenCV can read).")
    array = cv2.resize(array, (size, size), interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(array[None] if gray else array[..., ::-1].transpose(2, 0, 1).copy())
    return image.float() / 255


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "class"


def run(args: argparse.Namespace) -> list[Path]:
    """Computes and writes the overlays; returns the written paths."""
    if args.checkpoint:
        loaded = load_checkpoint(args.checkpoint, args.device)
    else:
        loaded = load_torchvision(args.arch, not args.no_pretrained, args.device)
    size = args.size or loaded.image_size or 224
    raw = torch.stack([load_image(p, loaded.in_channels, size) for p in args.images])
    mean = torch.tensor(loaded.mean).view(1, -1, 1, 1)
    std = torch.tensor(loaded.std).view(1, -1, 1, 1)
    images = ((raw - mean) / std).to(args.device)
    num_classes = len(loaded.class_names)
    if not 1 <= args.topk <= num_classes:
        raise CamlabError(f"--topk {args.topk} is out of range: use 1..{num_classes}.")
    with torch.no_grad():
        probs = loaded.model(images).softmax(1)
    top = probs.topk(args.topk, dim=1)
    maps = compute_cam(
        loaded.model, images, args.method, targets=top.indices, target_layer=args.layer,
        output_size=size, normalize=True,
    )  # fmt: skip
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rank in range(args.topk):
        classes = top.indices[:, rank].tolist()
        labels = [
            f"{loaded.class_names[c]} {p:.2f}"
            for c, p in zip(classes, top.values[:, rank].tolist(), strict=True)
        ]
        tiles = render_cams(
            images.cpu(), maps[:, rank].cpu(), loaded.mean, loaded.std, labels=labels,
            alpha=args.alpha, colormap=args.colormap,
        )  # fmt: skip
        for path, cls, tile in zip(args.images, classes, tiles, strict=True):
            method = args.method.replace("+", "p")
            name = f"{_slug(Path(path).stem)}_{method}_top{rank + 1}"
            target = out_dir / f"{name}_{_slug(loaded.class_names[cls])}.png"
            # OpenCV writes BGR.
            cv2.imwrite(str(target), tile.permute(1, 2, 0).numpy()[..., ::-1])
            written.append(target)
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", help="image files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="camlab GAPClassifier checkpoint (.ckpt)")
    source.add_argument("--arch", help="torchvision model name, e.g. resnet50")
    parser.add_argument("--no-pretrained", action="store_true", help="random torchvision weights")
    parser.add_argument("--method", default="gradcam", choices=list(CAM_METHODS))
    parser.add_argument("--topk", type=int, default=3, help="classes per image (default 3)")
    parser.add_argument("--layer", default=None, help="target layer name (default: CAM layer)")
    parser.add_argument("--size", type=int, default=None, help="input side (default: model's)")
    parser.add_argument("--out", default="cam_out", help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="CAM weight in the blend")
    parser.add_argument("--colormap", default="jet", help="OpenCV colour map name")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for path in run(args):
            print(path)
    except CamlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
