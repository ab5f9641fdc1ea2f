"""GAP networks (the architecture CAM needs): torchvision backbones cut for GAP + linear.

The LightningModule that trains them is `camlab.classifier.GAPClassifier`; the WSOL training
methods (`camlab.methods`) sit between the two: networks <- methods <- classifier."""

from camlab.models.backbones import BACKBONES, build_gapnet
from camlab.models.gap import GAPNet

__all__ = ["BACKBONES", "GAPNet", "build_gapnet"]
