"""The sanity checks' data randomisation test, made affordable: a copy of the classifier
fine-tuned on images of the scored split whose labels are randomly permuted.

The paper trains a model from scratch on the whole training set with permuted labels until it
fits them. Here a deep copy of the trained classifier takes ``steps`` Adam steps of
cross-entropy on ``images`` with permuted labels (BatchNorm in training mode, as in training),
so its upper layers are pushed to memorise noise while part of the learned features can
survive: a weaker test than the paper's. ``label_randomized_copy`` reports how far it got
(accuracy on the permuted and on the true labels of those images).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def permuted_labels(labels: Tensor, seed: int) -> Tensor:
    """``labels`` in a random order (seeded, CPU generator): the class frequencies are kept."""
    generator = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(len(labels), generator=generator).to(labels.device)]


@torch.inference_mode(False)
@torch.enable_grad()
def label_randomized_copy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, float]]:
    """A copy of ``model`` fine-tuned on ``images`` with permuted ``labels``; ``model`` is
    unchanged.

    Args:
        model: the trained classifier (``images -> logits``).
        images: ``[N, C, H, W]`` training images (the compared images should not be among them).
        labels: ``[N]`` their true classes.
        steps: optimiser steps; each draws ``batch_size`` images (seeded, without replacement
            within a pass over the images).
        lr: Adam's learning rate.
        batch_size: images per step.
        seed: the permutation's and the batches' seed.

    Returns:
        ``(copy, info)``: the fine-tuned copy in eval mode, and ``steps``, ``num_images``,
        ``permuted_accuracy`` and ``true_accuracy`` (% of ``images`` the copy gives the
        permuted / the true label, in eval mode).
    """
    images, labels = images.clone(), labels.clone()  # inference tensors cannot enter autograd
    noise = permuted_labels(labels, seed)
    work = copy.deepcopy(model).train()
    params = [p for p in work.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < min(batch_size, len(images)):
            order = torch.cat([order, torch.randperm(len(images), generator=generator)])
        batch, order = order[:batch_size].to(images.device), order[batch_size:]
        loss = F.cross_entropy(work(images[batch]), noise[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    work.eval()
    for p in params:
        p.grad = None  # the copy only makes maps now
    with torch.no_grad():
        predictions = torch.cat(
            [work(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
        )
    info = {
        "steps": steps,
        "num_images": len(images),
        "permuted_accuracy": float((predictions == noise).double().mean() * 100),
        "true_accuracy": float((predictions == labels).double().mean() * 100),
    }
    return work, info
