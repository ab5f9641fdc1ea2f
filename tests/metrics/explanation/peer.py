"""The case every Quantus parity test shares: real MNIST digits, a small GAP CNN, its Grad-CAMs
and the digits' own pixels as ground-truth masks, and one call of Quantus 0.6.0 on them."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from camlab.cam import compute_cam
from camlab.data.mnist import load_embedded_mnist
from camlab.metrics import cams_to_scoremaps

SIZE = 28


class SmallCNN(nn.Module):
    """conv-relu x3, global average pooling, one linear layer: the CAM architecture, small."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def explain_gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` Grad-CAM score maps of ``targets`` in [0, 1] at the images' size."""
    cams = compute_cam(model, images, "gradcam", targets=targets, target_layer="features.4")
    return cams_to_scoremaps(cams, tuple(images.shape[-2:])).to(torch.float32)


def digits(positions) -> tuple[torch.Tensor, torch.Tensor]:
    """``([k, 1, 28, 28] in [0, 1], [k])``: embedded digits at ``positions`` of a fixed
    shuffle (the pool is sorted by class)."""
    pool, labels = load_embedded_mnist()["all"]
    index = np.random.RandomState(0).permutation(len(pool))[list(positions)]
    images = torch.from_numpy(pool[index].astype(np.float32) / 255.0)[:, None]
    return images, torch.from_numpy(labels[index])


@functools.lru_cache(maxsize=2)
def trained_cnn(seed: int = 0) -> SmallCNN:
    """A ``SmallCNN`` trained 5 epochs of Adam on 2,000 digits (about 2 s; ~45% accurate on
    held-out digits): random weights give all-zero Grad-CAMs, which Quantus refuses."""
    x, y = digits(range(1000, 3000))
    torch.manual_seed(seed)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(5):
        for i in range(0, len(x), 50):
            loss = nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@functools.lru_cache(maxsize=4)
def digits_case(n: int = 6, seed: int = 0):
    """``(model, images [n,1,28,28], labels [n], maps [n,28,28], masks [n,28,28] bool)``:
    the first ``n`` digits of ``digits``, ``trained_cnn(seed)``,
    its Grad-CAMs of the true class, and the digit's pixels (> 0.5) as the mask."""
    model = trained_cnn(seed)
    images, labels = digits(range(n))
    maps = explain_gradcam(model, images, labels)
    masks = images[:, 0] > 0.5
    return model, images, labels, maps, masks


def quantus_explain(model, inputs, targets, **kwargs) -> np.ndarray:
    """Quantus's ``explain_func`` for camlab's Grad-CAM: numpy in, ``[N, 1, H, W]`` out."""
    images = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    return explain_gradcam(model, images, labels)[:, None].detach().numpy()


def run_quantus(name: str, kwargs: dict, model, images, labels, maps, masks=None, seed=None,
                explain: bool = False, batch_size: int = 64) -> np.ndarray:  # fmt: skip
    """One Quantus 0.6.0 call of metric class ``name`` on the case, ``np.random`` seeded first.

    Returns:
        Quantus's per-image scores as float64.
    """
    import quantus

    if seed is not None:
        np.random.seed(seed)
    metric = getattr(quantus, name)(disable_warnings=True, display_progressbar=False, **kwargs)
    out = metric(
        model=model,
        x_batch=images.numpy(),
        y_batch=labels.numpy(),
        a_batch=maps[:, None].numpy(),
        s_batch=None if masks is None else masks[:, None].numpy().astype(np.float32),
        explain_func=quantus_explain if explain else None,
        device="cpu",
        batch_size=batch_size,
    )
    return np.asarray(out, dtype=np.float64)
