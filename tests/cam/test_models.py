"""Our GAP classifiers and plain torchvision models, and the errors for bad input."""

import pytest
import torch
import torchvision
from cam_helpers import few_samples

from camlab.cam import CAM_METHODS, compute_cam, default_cam_layer
from camlab.errors import CamlabError
from camlab.models.backbones import build_gapnet

FAST = ["resnet18", "mobilenet_v2", "squeezenet1_1"]
SLOW = ["densenet121", "efficientnet_b0", "vgg16", "resnet50", "inception_v3"]


def _check_gapnet(name: str) -> None:
    torch.manual_seed(0)
    net = build_gapnet(name, num_classes=4).eval()
    side = 80 if name == "inception_v3" else 64
    x = torch.randn(2, 3, side, side)
    cam = compute_cam(net, x, "cam", targets=torch.tensor([0, 3]))
    hw = cam.shape[-1] * cam.shape[-2]
    for closed_form in (True, False):
        grad = compute_cam(net, x, "gradcam", targets=torch.tensor([0, 3]), closed_form=closed_form)
        scale = cam.abs().max() / hw
        torch.testing.assert_close(grad, cam.relu() / hw, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", FAST)
def test_gapnet_backbones(name):
    _check_gapnet(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_gapnet_backbones_slow(name):
    _check_gapnet(name)


@pytest.mark.parametrize(
    ("name", "layer", "has_head"),
    [
        ("resnet18", "layer4", True),
        ("mobilenet_v2", "features", True),
        ("densenet121", "features", False),
    ],
)
def test_plain_torchvision(name, layer, has_head):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    assert default_cam_layer(model) == layer
    x = torch.randn(2, 3, 64, 64)
    for method in CAM_METHODS:
        if method in ("sscam", "iscam") or (method in ("ablationcam", "scorecam") and not has_head):
            # One forward per channel (and sample): tested in test_reference_more.py, and here
            # on resnet18 (512 channels); DenseNet's 1024 would take 18 s.
            continue
        if method == "cam" and not has_head:
            # torchvision's DenseNet applies a ReLU between "features" and the pooling.
            with pytest.raises(CamlabError, match="gradcam"):
                compute_cam(model, x, method)
            continue
        out = compute_cam(model, x, method, targets=2, max_batch=256, **few_samples(method))
        side = 64 if method == "fullgrad" else 2  # FullGrad: input resolution
        assert out.shape == (2, 2, side, side) and torch.isfinite(out).all(), method
    if has_head:
        fc = model.fc if name == "resnet18" else model.classifier[1]
        feats = []
        handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: feats.append(o))
        with torch.no_grad():
            top = model(x).argmax(1)
        handle.remove()
        expected = torch.einsum("bc,bchw->bhw", fc.weight[top], feats[0])
        torch.testing.assert_close(compute_cam(model, x, "cam"), expected)


def test_densenet_gradcam_uses_post_relu_logits():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    fast = compute_cam(model, x, "gradcam", closed_form=True)  # head rejected -> autograd
    slow = compute_cam(model, x, "gradcam", closed_form=False)
    torch.testing.assert_close(fast, slow)


def test_layer_choice(tiny, images):
    out = compute_cam(tiny, images, "gradcam", target_layer="features.1")
    assert out.shape == (3, 12, 12)
    assert torch.equal(out, compute_cam(tiny, images, "gradcam", target_layer=tiny.features[1]))


def test_unknown_layer_lists_candidates(tiny, images):
    with pytest.raises(CamlabError, match=r"No layer named 'layer9'.*features\.0, features\.1"):
        compute_cam(tiny, images, target_layer="layer9")


def test_cam_needs_gap_linear_head(images):
    model = torchvision.models.vgg11(weights=None).eval()  # three Linear layers after pooling
    with pytest.raises(CamlabError, match="not of that form.*method='gradcam'"):
        compute_cam(model, torch.randn(1, 3, 32, 32), "cam")


def test_cam_at_other_layer_of_gapnet():
    net = build_gapnet("resnet18", num_classes=3).eval()
    with pytest.raises(CamlabError, match="layer3"):
        compute_cam(net, torch.randn(1, 3, 64, 64), "cam", target_layer="features.backbone.layer3")


def test_class_out_of_range_and_topk(tiny, images):
    with pytest.raises(CamlabError, match=r"0\.\.4"):
        compute_cam(tiny, images, targets=torch.tensor([0, 5, 1]))
    with pytest.raises(CamlabError, match=r"\[1, 5\]"):
        compute_cam(tiny, images, targets=6)
    with pytest.raises(CamlabError, match="do not match the batch"):
        compute_cam(tiny, images, targets=torch.tensor([0, 1]))
    top3 = compute_cam(tiny, images, "cam", targets=3)
    with torch.no_grad():
        order = tiny(images).topk(3, 1).indices
    torch.testing.assert_close(top3, compute_cam(tiny, images, "cam", targets=order))
    torch.testing.assert_close(top3[:, 0], compute_cam(tiny, images, "cam"))


def test_unknown_method_lists_registry(tiny, images):
    with pytest.raises(CamlabError, match="cam, gradcam, gradcam\\+\\+, xgradcam"):
        compute_cam(tiny, images, "gradcam+")


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet18", "layer4"),
        ("densenet121", "features"),
        ("squeezenet1_1", "features"),  # not the conv head
        ("efficientnet_b0", "features"),  # SE blocks pool globally deep inside
        ("convnext_tiny", "features"),  # blocks contain Linear layers
        ("regnet_y_400mf", "trunk_output"),
        ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),  # tokens: camlab.cam.tokens
        ("swin_t", "norm"),
    ],
)
def test_default_layer_plain_and_wrapped(name, layer):
    model = torchvision.models.get_model(name, weights=None)
    assert default_cam_layer(model) == layer
    wrapper = torch.nn.Module()
    wrapper.model = model  # e.g. a LightningModule holding a torchvision network
    assert default_cam_layer(wrapper) == f"model.{layer}"
