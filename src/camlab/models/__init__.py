"""GAP classifiers (the architecture CAM needs) and their LightningModule."""

from camlab.models.backbones import BACKBONES, build_gapnet
from camlab.models.gap import GAPNet

__all__ = ["BACKBONES", "GAPNet", "build_gapnet"]
