"""The GAP classifier: backbone feature maps -> global average pooling -> one linear layer."""

from collections import OrderedDict

from torch import Tensor, nn


class GAPNet(nn.Module):
    """A classifier of the form CAM needs: ``logits = classifier(mean_hw(features(x)))``.

    Every backbone is wrapped into the same small interface, so CAM code never special-cases one:

    - ``features``: ``nn.Sequential(backbone=..., neck=...)``; its output ``[B, C, h, w]`` is the
      CAM layer. ``backbone`` holds (possibly pretrained) torchvision layers, ``neck`` the new
      layers the CAM paper adds (VGG's extra conv) or ``nn.Identity``.
    - ``cam_layer``: the dotted name of that module (``"features"``), for hooks.
    - ``gap_classifier``: the ``nn.Linear`` applied to the pooled features.

    Args:
        backbone: image ``[B, in_channels, H, W]`` -> feature maps.
        feature_dim: channels ``C`` of the CAM layer.
        num_classes: number of output classes.
        neck: optional new layers after the backbone (part of the CAM layer).
    """

    cam_layer = "features"

    def __init__(
        self, backbone: nn.Module, feature_dim: int, num_classes: int, neck: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(backbone=backbone, neck=neck if neck is not None else nn.Identity())
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_dim, num_classes)

    @property
    def gap_classifier(self) -> nn.Linear:
        return self.classifier

    def forward_features(self, x: Tensor) -> Tensor:
        """Returns the CAM-layer feature maps ``[B, C, h, w]``."""
        return self.features(x)

    def head(self, feats: Tensor) -> Tensor:
        """Feature maps ``[B, C, h, w]`` -> logits ``[B, num_classes]``."""
        return self.classifier(self.pool(feats).flatten(1))

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(logits [B, K], feature maps [B, C, h, w])`` from one forward pass."""
        feats = self.forward_features(x)
        return self.head(feats), feats

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))
