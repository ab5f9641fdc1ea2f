"""CutMix: box geometry and label weights for fixed lambda and centre, by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from camlab.methods.cutmix import CutMix, cut_box, cutmix, paste_box
from camlab.models.gap import GAPNet


@pytest.mark.parametrize(
    ("size", "lam", "centre", "box", "weight"),
    [
        # lam 0.75: sqrt(0.25) = 0.5 -> 4 x 4 box centred at (4, 4): rows/cols 2..5.
        ((8, 8), 0.75, (4, 4), (2, 6, 2, 6), 1 - 16 / 64),
        # Same box at (1, 1): 1 - 2 clips to 0, 1 + 2 = 3 -> 3 x 3 = 9 pixels.
        ((8, 8), 0.75, (1, 1), (0, 3, 0, 3), 1 - 9 / 64),
        # lam 0.5: int(8 * 0.7071) = 5, halves of 2 -> a 4-pixel side (the reference's floor).
        ((8, 8), 0.5, (4, 4), (2, 6, 2, 6), 1 - 16 / 64),
        # Non-square 10 x 6, lam 0.64: ratio 0.6 -> 6 rows, int(3.6) = 3 cols; at (5, 0):
        # rows 2..7, cols clip(-1) = 0 .. 1 -> 6 x 1 pixels of 60.
        ((10, 6), 0.64, (5, 0), (2, 8, 0, 1), 1 - 6 / 60),
        # lam 1: nothing cut, the own label keeps all its weight.
        ((8, 8), 1.0, (3, 3), (3, 3, 3, 3), 1.0),
        # lam 0: the whole side, centred: the full image, weight 0.
        ((8, 8), 0.0, (4, 4), (0, 8, 0, 8), 0.0),
    ],
)
def test_box_and_label_weight(size, lam, centre, box, weight):
    h, w = size
    assert cut_box(h, w, lam, *centre) == box
    images = torch.stack([torch.full((1, h, w), 1.0), torch.full((1, h, w), 2.0)])
    mixed, own = paste_box(images, torch.tensor([1, 0]), box)
    assert own == pytest.approx(weight)
    y0, y1, x0, x1 = box
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert torch.equal(mixed[0, 0], torch.where(inside, 2.0, 1.0))  # image 1's pixels pasted
    assert torch.equal(mixed[1, 0], torch.where(inside, 1.0, 2.0))
    assert images[0].eq(1).all()  # input untouched
    # The own label's weight is exactly the share of the image's own pixels left.
    assert (mixed[0, 0] == 1).float().mean().item() == pytest.approx(weight)


def test_sampled_mix_is_consistent_and_lambda_is_uniform_for_beta_one():
    torch.manual_seed(0)
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 16, 16).contiguous()
    weights = []
    for _ in range(400):
        mixed, perm, own = cutmix(images, beta=1.0)
        assert sorted(perm.tolist()) == [0, 1, 2, 3]
        shares = (mixed == images).float().mean((1, 2, 3))  # own pixels left, per image
        fixed_points = perm == torch.arange(4)  # an image mixed with itself stays whole
        assert torch.allclose(shares[~fixed_points], torch.tensor(own))
        weights.append(own)
    # Beta(1, 1) is uniform and the centre uniform over the pixels: the own label's expected
    # weight is the mean of 1 - area / 256 over lam (midpoint rule) and all 256 centres,
    # 0.7225 (above 0.5: the floored sides and the clipping at the border only shrink boxes).
    lams = [(i + 0.5) / 500 for i in range(500)]
    expected = sum(
        1 - (y1 - y0) * (x1 - x0) / 256
        for lam in lams for cy in range(16) for cx in range(16)
        for y0, y1, x0, x1 in [cut_box(16, 16, lam, cy, cx)]
    ) / (500 * 256)  # fmt: skip
    assert expected == pytest.approx(0.7225, abs=1e-3)
    mean = sum(weights) / len(weights)
    assert abs(mean - expected) < 0.03  # sd of one weight ~0.2: 3 standard errors of 400
    assert min(weights) < 0.3 and max(weights) == 1.0


def test_loss_mixes_both_labels_by_pixel_share():
    net = GAPNet(torch.nn.Identity(), 1, 2)
    with torch.no_grad():
        net.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net.classifier.bias.zero_()
    images = torch.stack([torch.full((1, 8, 8), 1.0), torch.full((1, 8, 8), -1.0)])
    labels = torch.tensor([0, 1])
    method = CutMix(net, "resnet18", 2, beta=1.0, prob=1.0)
    torch.manual_seed(3)
    loss, logits, _ = method.training_loss(net, images, labels, F.cross_entropy)
    # Replay the draws: the prob test (one uniform), then cutmix's own.
    torch.manual_seed(3)
    assert float(torch.rand(())) < 1.0
    mixed, perm, own = cutmix(images, 1.0)
    assert torch.allclose(logits, net(mixed))
    expected = own * F.cross_entropy(logits, labels) + (1 - own) * F.cross_entropy(
        logits, labels[perm]
    )
    assert torch.isclose(loss, expected)
    if perm.tolist() == [1, 0]:  # the pixel means, by hand: a share `own` of +1, the rest -1
        assert torch.allclose(logits[0], torch.tensor([2 * own - 1, 1 - 2 * own]))


def test_probability_zero_or_beta_zero_is_plain_training():
    net = GAPNet(torch.nn.Identity(), 1, 2)
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 0, 1])
    plain = F.cross_entropy(net(images), labels)
    for method in (CutMix(net, "vgg16", 2, prob=0.0), CutMix(net, "vgg16", 2, beta=0.0)):
        loss, logits, _ = method.training_loss(net, images, labels, F.cross_entropy)
        assert torch.isclose(loss, plain) and torch.allclose(logits, net(images))
    with pytest.raises(ValueError):
        CutMix(net, "vgg16", 2, prob=1.5)
    assert math.isclose(CutMix(net, "vgg16", 2).beta, 1.0)
