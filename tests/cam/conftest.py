"""Small models for CAM tests (CPU, seconds)."""

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Stride-1 CNN: feature maps have the input's size, so no resampling blurs comparisons."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


@pytest.fixture
def tiny() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # non-trivial BN statistics
        model.features[3].running_mean.uniform_(-0.2, 0.2)
        model.features[3].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
