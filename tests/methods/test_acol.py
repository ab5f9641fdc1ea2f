"""ACoL: the erased positions at threshold 0.7 and both branches' losses, by hand."""

import math

import torch
import torch.nn.functional as F

from camlab.methods.acol import ACoL, erase_discriminative
from camlab.models.gap import GAPNet


def test_erased_positions_at_threshold_07():
    # Min-max normalised: [[0, 0.7], [0.75, 1], [0.699, 0.2]]; ">= 0.7" (the reference's
    # torch.ge) erases the exact 0.7, 0.75 and 1, keeps 0.699.
    cam = torch.tensor([[0.0, 7.0], [7.5, 10.0], [6.99, 2.0]])[None, None]
    feats = torch.ones(1, 3, 3, 2)
    erased, where = erase_discriminative(feats, cam, 0.7)
    expected = torch.tensor([[False, True], [True, True], [False, False]])
    assert torch.equal(where[0, 0], expected)
    assert torch.equal(erased, (~expected).float().expand(1, 3, 3, 2))
    # Shift and scale do not matter (normalised first).
    _, again = erase_discriminative(feats, 3 * cam - 5, 0.7)
    assert torch.equal(again, where)


def test_a_constant_cam_erases_nothing():
    # The reference divides by zero there (NaN), and NaN >= 0.7 is False everywhere.
    feats = torch.randn(1, 4, 3, 3)
    erased, where = erase_discriminative(feats, torch.full((1, 1, 3, 3), 2.0), 0.7)
    assert not where.any() and torch.equal(erased, feats)


def hand_model() -> tuple[GAPNet, ACoL]:
    net = GAPNet(torch.nn.Identity(), 2, 2)  # the "features" are the input
    acol = ACoL(net, "resnet18", 2, threshold=0.7)
    with torch.no_grad():
        for layer in (net.classifier, acol.classifier_b):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    return net, acol


def test_branch_b_sees_only_the_non_discriminative_features_and_losses_add():
    net, acol = hand_model()
    # Channel 0 is class 0's CAM (identity classifier): [[0, 7], [7.5, 10]] -> 0.7, 0.75 and
    # 1 are erased; only position (0, 0) is left, where channel 1 holds 1.
    feats = torch.stack([torch.tensor([[0.0, 7.0], [7.5, 10.0]]),
                         torch.tensor([[1.0, 2.0], [3.0, 4.0]])])[None]  # fmt: skip
    labels = torch.tensor([0])
    logits_b = acol.branches(net, feats, labels)[2]  # the hand net's features: its input
    assert torch.allclose(logits_b, torch.tensor([[0.0, 0.25]]))  # GAP over 4 positions
    loss, logits, out_feats = acol.training_loss(net, feats, labels, F.cross_entropy)
    assert torch.allclose(logits, torch.tensor([[24.5 / 4, 10.0 / 4]]))  # branch A: plain GAP
    # CE(A) + CE(B) = softplus(2.5 - 6.125) + softplus(0.25 - 0).
    expected = math.log1p(math.exp(2.5 - 6.125)) + math.log1p(math.exp(0.25))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert torch.equal(out_feats, feats)


def test_the_erasing_map_is_not_differentiated():
    # The reference detaches the attention: branch B's loss reaches classifier A only through
    # nothing (the features here are inputs), so A's weights get no gradient from it.
    net, acol = hand_model()
    feats = torch.rand(3, 2, 4, 4)
    loss_b = F.cross_entropy(acol.branches(net, feats, torch.tensor([0, 1, 0]))[2],
                             torch.tensor([0, 1, 0]))  # fmt: skip
    loss_b.backward()
    assert net.classifier.weight.grad is None and acol.classifier_b.weight.grad is not None


def test_eval_is_branch_a_alone():
    net, acol = hand_model()
    x = torch.rand(2, 2, 4, 4)
    assert torch.allclose(net.eval()(x), x.mean((2, 3)))
    assert sorted(acol.state_dict()) == ["classifier_b.bias", "classifier_b.weight"]
