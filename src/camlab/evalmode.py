"""Running a model in eval mode for a moment (panels, CAMs, metrics) inside or outside training."""

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd graph for the duration; each module's own mode is restored
    afterwards (a model mid-training may hold modules in either mode)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
