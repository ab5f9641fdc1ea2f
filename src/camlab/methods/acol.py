"""Adversarial Complementary Learning (Zhang et al., CVPR 2018)."""

import torch
from torch import Tensor, nn

from camlab.methods.base import Criterion, WSOLMethod, label_cam, minmax_with_validity
from camlab.models.gap import GAPNet
from camlab.models.reference import KeyMap, ReferenceNet


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
    features before a second classifier (branch B) sees them. The loss is ``CE(A) + CE(B)``:
    B must classify from what A did not use, which spreads the features' evidence over the
    object. On torchvision networks camlab's CAMs read branch A; on reference networks
    validation and evaluation score the reference's map (``reference_cam``: both branches).

    On a torchvision network, B is a second linear layer on the erased CAM-layer features. On
    a reference network (``camlab.models.reference``, built for ``acol``), as the reference:
    the erased tensor is the backbone's output (the input of A's convolutional head), and B is
    a fresh copy of that head (its ``classifier_B``).

    Args:
        threshold: ``acol_threshold`` (reference default 0.7).
    """

    name = "acol"

    def __init__(
        self, net: GAPNet, backbone: str, num_classes: int, threshold: float = 0.7
    ) -> None:
        super().__init__(net, backbone, num_classes)
        self.threshold = float(threshold)
        self.reference = isinstance(net, ReferenceNet)
        if self.reference:
            self.head_b, self.classifier_b = net.new_head()
        else:
            self.classifier_b = nn.Linear(net.classifier.in_features, num_classes)

    def branches(
        self, net: GAPNet, images: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Both branches from one pass of the shared layers, erasing at ``labels``.

        Returns:
            ``(logits [B, K], CAM-layer features [B, C, h, w], branch B's logits [B, K],
            branch B's features [B, C, h, w])``.
        """
        if self.reference:
            shared = net.features.backbone(images)
            feats = net.features.neck(shared)
            logits = net.head(feats)
        else:
            logits, feats = net.forward_with_features(images)
            shared = feats
        erased, _ = erase_discriminative(
            shared, label_cam(net.classifier, feats, labels), self.threshold
        )
        feats_b = self.head_b(erased) if self.reference else erased
        return logits, feats, self.classifier_b(torch.flatten(net.pool(feats_b), 1)), feats_b

    def training_loss(
        self, net: GAPNet, images: Tensor, labels: Tensor, criterion: Criterion
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits, feats, logits_b, _ = self.branches(net, images, labels)
        return criterion(logits, labels) + criterion(logits_b, labels), logits, feats

    @property
    def has_evaluation_cam(self) -> bool:  # type: ignore[override]
        return self.reference

    def evaluation_forward(
        self, net: GAPNet, images: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """On a reference network, the reference's evaluation map (``reference_cam``) from the
        same pass as the logits; on a torchvision network, branch A's CAM (None)."""
        if not self.reference:
            return super().evaluation_forward(net, images, labels)
        logits, feats, _, feats_b = self.branches(net, images, labels)
        return logits, feats, self.cam_from_branches(net, feats, feats_b, labels)

    def reference_cam(self, net: GAPNet, images: Tensor, labels: Tensor) -> Tensor:
        """The reference's ACoL evaluation CAM (its ``return_cam``): both branches run with
        the true labels (B sees the features erased at them), each branch's class map is
        min-max normalised, and the element-wise maximum is taken. camlab's CAM engine reads
        one GAP network and cannot form it.

        Args:
            net: the network this method trains.
            images: ``[B, C, H, W]``.
            labels: ``[B]``.

        Returns:
            ``[B, h, w]`` in [0, 1].
        """
        _, feats, _, feats_b = self.branches(net, images, labels)
        return self.cam_from_branches(net, feats, feats_b, labels)

    def cam_from_branches(
        self, net: GAPNet, feats: Tensor, feats_b: Tensor, labels: Tensor
    ) -> Tensor:
        """``reference_cam`` from the features of ``branches`` (run at ``labels``):
        ``[B, C, h, w]`` twice -> ``[B, h, w]``."""
        map_a, _ = minmax_with_validity(label_cam(net.classifier, feats, labels))
        map_b, _ = minmax_with_validity(label_cam(self.classifier_b, feats_b, labels))
        return torch.maximum(map_a, map_b)[:, 0]

    def reference_key_map(self) -> KeyMap:
        if not self.reference:
            return KeyMap({})
        return KeyMap(
            {"head_b": "classifier_B", "classifier_b": "classifier_B.4"},
            frozenset(["classifier_b"]),
        )

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
