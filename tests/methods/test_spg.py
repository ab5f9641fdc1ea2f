"""SPG: the self-produced masks and the masked attention loss, by hand; the side branches."""

import math

import pytest
import torch
import torch.nn.functional as F

from camlab.errors import CamlabError
from camlab.methods.spg import IGNORE, SPG, SPG_TAPS, masked_bce, spg_mask
from camlab.models import build_gapnet


def test_mask_with_enough_foreground():
    # 8 x 8 = 64 pixels: 40 at 0.9 (> 0.7: foreground, 40 >= 30 of them), 20 at 0.3 (ignored),
    # 4 at 0.005 (< 0.01: background). The reference's B2 thresholds (0.7, 0.01).
    attention = torch.cat([torch.full((40,), 0.9), torch.full((20,), 0.3),
                           torch.full((4,), 0.005)]).view(1, 1, 8, 8)  # fmt: skip
    mask = spg_mask(attention, 0.7, 0.01).flatten()
    assert torch.equal(mask[:40], torch.ones(40))
    assert torch.equal(mask[40:60], torch.full((20,), IGNORE))
    assert torch.equal(mask[60:], torch.zeros(4))


def test_mask_falls_back_to_07_of_the_max_below_30_foreground_pixels():
    # Only 4 pixels above 0.7 (at 0.8): the fallback threshold is 0.7 * 0.8 = 0.56, which the
    # 10 pixels at 0.6 also pass (14 foreground); 0.5 stays ignored; 0.0 is background.
    attention = torch.cat([torch.full((4,), 0.8), torch.full((10,), 0.6),
                           torch.full((40,), 0.5), torch.zeros(10)]).view(1, 1, 8, 8)  # fmt: skip
    mask = spg_mask(attention, 0.7, 0.01).flatten()
    assert torch.equal(mask[:14], torch.ones(14))
    assert torch.equal(mask[14:54], torch.full((40,), IGNORE))
    assert torch.equal(mask[54:], torch.zeros(10))


def test_each_image_has_its_own_fallback_and_invalid_images_are_ignored():
    few = torch.cat([torch.full((4,), 0.8), torch.full((60,), 0.6)]).view(1, 1, 8, 8)
    many = torch.cat([torch.full((40,), 0.8), torch.full((24,), 0.6)]).view(1, 1, 8, 8)
    mask = spg_mask(torch.cat([few, many]), 0.7, 0.01, valid=torch.tensor([True, False]))
    assert mask[0].eq(1).all()  # 0.6 > 0.56: the fallback takes all of image 0
    assert mask[1].eq(IGNORE).all()  # image 1 marked invalid (a constant CAM)
    assert spg_mask(many, 0.7, 0.01).eq(1).sum() == 40  # alone, image 1 has no fallback


def test_background_wins_when_both_thresholds_hold():
    # The reference sets foreground first, then background: a low "high" threshold.
    attention = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    mask = spg_mask(attention, 0.0, 0.5)
    assert torch.equal(mask.flatten() == 0, attention.flatten() < 0.5)
    assert torch.equal(mask.flatten() == 1, attention.flatten() >= 0.5)


def test_masked_bce_by_hand():
    mask = torch.tensor([1.0, 0.0, IGNORE, IGNORE]).view(1, 1, 2, 2)
    logits = torch.tensor([2.0, 2.0, -50.0, 50.0]).view(1, 1, 2, 2)
    # Pixel 1 (target 1): softplus(-2); pixel 2 (target 0): softplus(2); the rest ignored.
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(2.0))) / 2
    assert math.isclose(masked_bce(logits, mask).item(), expected, rel_tol=1e-6)
    assert math.isclose(masked_bce(torch.zeros(1, 1, 2, 2), mask).item(), math.log(2), rel_tol=1e-6)
    # Every pixel ignored: 0 (the reference's empty mean would be NaN), and differentiable.
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss = masked_bce(logits, torch.full((1, 1, 2, 2), IGNORE))
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().sum() == 0


def test_side_branches_taps_and_gradients():
    torch.manual_seed(0)
    net = build_gapnet("resnet18", 3, hires_cam=True)
    spg = SPG(net, "resnet18", 3)
    assert spg.thresholds == ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))  # reference defaults
    net.train()
    x, labels = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    logits, feats, b1, b2, c = spg.branches(net, x)
    # 64 px: layer3 (B1 after its block 0, B2 after it) and layer4 (hires) at stride 16.
    assert b1.shape == b2.shape == c.shape == (2, 1, 4, 4) and feats.shape == (2, 512, 4, 4)
    assert spg._taps == {}  # nothing kept after the pass
    net.eval()
    with torch.no_grad():
        net(x)
    assert spg._taps == {} and not spg._capturing  # plain forwards capture nothing

    net.train()
    loss, *_ = spg.training_loss(net, x, labels, F.cross_entropy)
    loss.backward()
    for branch in (spg.b1_stem, spg.b2_stem, spg.b_shared, spg.branch_c):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())
    assert net.features.backbone.layer2[0].conv1.weight.grad.abs().sum() > 0


def test_guidance_losses_follow_the_masks():
    net = build_gapnet("resnet18", 3, hires_cam=True)
    spg = SPG(net, "resnet18", 3)
    # A CAM with one hot cell, branches that output the same map as logits.
    cam = torch.zeros(1, 1, 4, 4)
    cam[0, 0, 1, 1] = 1.0
    zeros = torch.zeros(1, 1, 4, 4)
    l_b2, l_b1, l_c = spg.guidance_losses(cam, zeros, zeros, zeros, (16, 16))
    # Zero logits: every kept pixel costs log 2, whatever its target.
    for loss in (l_b2, l_b1, l_c):
        assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    # B1's mask comes from sigmoid(B2) = 0.5 everywhere: not > 0.5 and not < 0.05, and the
    # fallback 0.5 > 0.35 takes every pixel as foreground.
    b2 = torch.zeros(1, 1, 4, 4)
    mask = spg_mask(torch.sigmoid(F.interpolate(b2, size=(16, 16), mode="bilinear")), 0.5, 0.05)
    assert mask.eq(1).all()


def test_unsupported_backbone():
    with pytest.raises(CamlabError, match="method=spg.*densenet121"):
        SPG(build_gapnet("densenet121", 2), "densenet121", 2)
    assert set(SPG_TAPS) >= {"vgg16", "inception_v3", "resnet50"}
