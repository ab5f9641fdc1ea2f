"""Adversarial Complementary Learning (Zhang et al., CVPR 2018)."""

import torch
from torch import Tensor, nn

from camlab.methods.base import Criterion, WSOLMethod, label_cam, minmax_with_validity
from camlab.models.gap import GAPNet


def erase_discriminative(features: Tensor, cam: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Zeroes the features where the min-max normalised CAM reaches ``threshold``
    (``>=``, the reference's ``torch.ge``); the CAM is detached, as the reference's
    ``get_attention`` clones it.

    Args:
        features: ``[B, C, h, w]``.
        cam: ``[B, 1, h, w]``, branch A's map of the label.
        threshold: ``acol_threshold``.

    Returns:
        ``(erased features [B, C, h, w], erased positions [B, 1, h, w] bool)``.
    """
    attention, valid = minmax_with_validity(cam.detach())
    erased = (attention >= threshold) & valid.view(-1, 1, 1, 1)
    return features * (~erased).to(features.dtype), erased


class ACoL(WSOLMethod):
    """ACoL: branch A is the GAP classifier; its CAM for the true label, min-max normalised,
    marks the most discriminative positions (>= ``threshold``), which are erased from the
    CAM-layer features before a second classifier (branch B) sees them. The loss is
    ``CE(A) + CE(B)``: B must classify from what A did not use, which spreads the features'
    evidence over the object. Only branch A is used at eval time.

    Args:
        threshold: ``acol_threshold`` (reference default 0.7).
    """

    name = "acol"

    def __init__(
        self, net: GAPNet, backbone: str, num_classes: int, threshold: float = 0.7
    ) -> None:
        super().__init__(net, backbone, num_classes)
        self.threshold = float(threshold)
        self.classifier_b = nn.Linear(net.classifier.in_features, num_classes)

    def branch_b(self, net: GAPNet, features: Tensor, labels: Tensor) -> Tensor:
        """CAM-layer features ``[B, C, h, w]`` -> branch B's logits ``[B, K]``."""
        erased, _ = erase_discriminative(
            features, label_cam(net.classifier, features, labels), self.threshold
        )
        return self.classifier_b(torch.flatten(net.pool(erased), 1))

    def training_loss(
        self, net: GAPNet, images: Tensor, labels: Tensor, criterion: Criterion
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits, feats = net.forward_with_features(images)
        loss = criterion(logits, labels) + criterion(self.branch_b(net, feats, labels), labels)
        return loss, logits, feats

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
