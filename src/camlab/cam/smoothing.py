"""pytorch-grad-cam's ``eigen_smooth`` and ``aug_smooth`` options.

- ``eigen_smooth``: instead of summing a method's per-channel contributions ``P_c`` (``w_c A_c``,
  or ``ReLU(G_c) A_c`` for LayerCAM, ...), project them on their first principal component (the
  Eigen-CAM projection of ``P``), then apply the method's ReLU. The SVD's arbitrary sign is fixed
  so that the projection correlates positively with the plain sum ``sum_c P_c``.
- ``aug_smooth``: test-time augmentation. The maps of the 6 images ``flip(X) * m`` (no flip /
  horizontal flip x ``m`` in 0.9, 1, 1.1, as pytorch-grad-cam's ttach transforms) are each
  min-max scaled, flipped back and averaged. Unlike pytorch-grad-cam, the targets (``None`` =
  top-1) are taken from the unaugmented image for all 6, so one class is explained.
"""

from torch import Tensor

from camlab.cam.activation import eigencam

AUGMENTATIONS = [(flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1)]


def project_terms(terms: Tensor) -> Tensor:
    """First principal component projection of ``[B, k, C, h, w]`` terms -> ``[B, k, h, w]``."""
    b, k = terms.shape[:2]
    return eigencam(terms.flatten(0, 1)).reshape(b, k, *terms.shape[-2:])


def augment(images: Tensor, flip: bool, factor: float) -> Tensor:
    """``flip(images) * factor``, horizontal flip of ``[B, C, H, W]``; identity for (False, 1)."""
    out = images.flip(-1) if flip else images
    return out * factor if factor != 1.0 else out
