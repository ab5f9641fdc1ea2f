"""ADL on a hand-made feature map: the importance map, the drop mask and the layer positions."""

import copy

import pytest
import torch

from camlab.errors import CamlabError
from camlab.methods.adl import ADL, ADLMethod, adl_maps, adl_positions
from camlab.models import build_gapnet


def hand_features() -> torch.Tensor:
    # Channel means (the self-attention map): [[2, 4], [6, 8]].
    ch0 = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    ch1 = torch.tensor([[3.0, 5.0], [7.0, 9.0]])
    return torch.stack([ch0, ch1])[None]  # [1, 2, 2, 2]


def test_importance_map_and_drop_mask_by_hand():
    importance, drop = adl_maps(hand_features(), threshold=0.9)
    assert torch.allclose(importance[0, 0], torch.sigmoid(torch.tensor([[2.0, 4.0], [6.0, 8.0]])))
    # 0.9 * max 8 = 7.2: only the 8 reaches it and is dropped.
    assert torch.equal(drop[0, 0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    # 0.5 * 8 = 4: the 4 is not below it (strict "<"), so 4, 6, 8 are dropped.
    _, drop = adl_maps(hand_features(), threshold=0.5)
    assert torch.equal(drop[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_the_threshold_is_relative_to_each_images_own_maximum():
    feats = torch.cat([hand_features(), 10 * hand_features()])
    _, drop = adl_maps(feats, threshold=0.9)
    assert torch.equal(drop[0], drop[1])


def test_drop_rate_selects_the_drop_mask_or_the_importance_map():
    x = hand_features()
    importance, drop = adl_maps(x, 0.9)
    # floor(u + 1) = 1 for every u in [0, 1): always the drop mask; floor(u + 0) = 0: never.
    assert torch.equal(ADL(1.0, 0.9).train()(x), x * drop)
    assert torch.allclose(ADL(0.0, 0.9).train()(x), x * importance)
    torch.manual_seed(0)
    picks = [torch.equal(ADL(0.75, 0.9).train()(x), x * drop) for _ in range(400)]
    assert abs(sum(picks) / 400 - 0.75) < 0.07  # 3 sd of a Bernoulli(0.75) mean over 400
    assert ADL(0.75, 0.9).eval()(x) is x  # the identity at eval time
    with pytest.raises(ValueError):
        ADL(1.2, 0.9)


@pytest.mark.parametrize(
    ("backbone", "positions", "kinds"),
    [
        ("resnet18", ["layer3.0", "layer4.0", "layer4.1"], ["BasicBlock"] * 3),
        ("resnet50", ["layer3.0", "layer4.0", "layer4.2"], ["Bottleneck"] * 3),
        # After pool3, after conv4_3's ReLU (before pool4), after conv5_3's ReLU.
        ("vgg16", ["16", "22", "29"], ["MaxPool2d", "ReLU", "ReLU"]),
        ("inception_v3", ["Mixed_5d", "Mixed_6e", "Mixed_7c"],
         ["InceptionA", "InceptionC", "InceptionE"]),
    ],
)  # fmt: skip
def test_reference_positions(backbone, positions, kinds):
    net = build_gapnet(backbone, 3)
    assert adl_positions(backbone, net) == positions
    layers = net.features.backbone
    assert [type(layers.get_submodule(p)).__name__ for p in positions] == kinds


def test_hooks_act_in_training_only_and_leave_the_state_dict_alone():
    net = build_gapnet("resnet18", 4, hires_cam=True)
    plain = copy.deepcopy(net)
    method = ADLMethod(net, "resnet18", 4, drop_rate=1.0, threshold=0.0)
    assert net.state_dict().keys() == plain.state_dict().keys()
    assert list(method.state_dict()) == []  # no parameters, no buffers
    x = torch.randn(2, 3, 64, 64)
    # threshold 0 and rate 1: the drop mask keeps attention < 0, which ReLU features never
    # have, so the last ADL (after layer4's last block, the CAM layer) zeroes every feature.
    method.train()
    net.train()
    logits, feats = net.forward_with_features(x)
    assert feats.abs().sum() == 0
    assert torch.allclose(logits, net.classifier.bias.expand(2, -1))
    plain.load_state_dict(net.state_dict())  # the training pass moved BatchNorm statistics
    method.eval()
    net.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))


def test_unsupported_backbone_is_one_clear_error():
    with pytest.raises(CamlabError, match="method=adl.*mobilenet_v2"):
        ADLMethod(build_gapnet("mobilenet_v2", 2), "mobilenet_v2", 2)


def test_gradient_reaches_the_backbone_through_the_importance_map():
    net = build_gapnet("resnet18", 4, hires_cam=True)
    ADLMethod(net, "resnet18", 4, drop_rate=0.0)  # always the importance map: never zero
    net.train()
    logits, _ = net.forward_with_features(torch.randn(2, 3, 64, 64))
    logits.sum().backward()
    assert net.features.backbone.conv1.weight.grad.abs().sum() > 0
