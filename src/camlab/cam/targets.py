"""Turns the ``targets`` argument into class indices ``[B, k]``."""

from collections.abc import Sequence

import torch
from torch import Tensor

from camlab.errors import CamlabError

Targets = None | int | Tensor | Sequence[int]


def resolve_targets(targets: Targets, logits: Tensor) -> tuple[Tensor, bool]:
    """Class indices per image and whether the result keeps a ``k`` axis.

    Args:
        targets: ``None`` = top-1 prediction; ``int`` k = the top-k predictions (descending);
            tensor/sequence ``[B]`` = one class per image (e.g. ground truth), a 0-d tensor is
            used for every image; ``[B, k]`` = k classes per image.
        logits: ``[B, K]`` model output.

    Returns:
        ``(indices [B, k] long on the logits' device, keep_k)``; ``keep_k`` is False for ``None``
        and ``[B]`` targets, whose maps are returned as ``[B, h, w]``.

    Raises:
        CamlabError: k or a class index out of range, or a shape that does not match the batch.
    """
    batch, num_classes = logits.shape
    if targets is None:
        return logits.argmax(1, keepdim=True), False
    if isinstance(targets, bool):
        raise CamlabError("targets must be None, an int k (top-k) or class indices, not a bool.")
    if isinstance(targets, int):
        if not 1 <= targets <= num_classes:
            raise CamlabError(
                f"top-k targets={targets} is out of range: k must be in [1, {num_classes}]."
            )
        return logits.topk(targets, dim=1).indices, True
    idx = torch.as_tensor(targets, device=logits.device)
    if idx.is_floating_point() or idx.is_complex():
        raise CamlabError(f"Class indices must be integers; got dtype {idx.dtype}.")
    # Labels from a loader under inference_mode are inference tensors, which gather cannot
    # save for backward; a copy made outside inference mode can be.
    idx = idx.clone().long() if idx.is_inference() else idx.long()
    if idx.dim() == 0:
        idx, keep_k = idx.expand(batch).reshape(batch, 1), False
    elif idx.dim() == 1 and idx.shape[0] == batch:
        idx, keep_k = idx[:, None], False
    elif idx.dim() == 2 and idx.shape[0] == batch:
        keep_k = True
    else:
        raise CamlabError(
            f"targets of shape {tuple(idx.shape)} do not match the batch of {batch} images; "
            f"expected [{batch}] or [{batch}, k] class indices, or an int k for top-k."
        )
    if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
        bad = idx[(idx < 0) | (idx >= num_classes)][0].item()
        raise CamlabError(
            f"Class index {bad} is out of range: valid class indices are 0..{num_classes - 1}."
        )
    return idx, keep_k
