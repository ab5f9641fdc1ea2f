"""``compute_cams``: the logits and many methods from one forward pass, each map equal to its own
``compute_cam`` call bit for bit, so the evaluation's numbers do not change."""

import pytest
import torch
import torchvision

from camlab.cam import CAM_METHODS, compute_cam, compute_cams
from camlab.classifier import GAPClassifier

# Channel-by-channel methods on few channels (squeezenet's CAM layer has 512; slow but exact).
SLOW = {"scorecam", "ablationcam", "sscam", "iscam"}


@pytest.mark.parametrize("closed_form", [True, False])
@pytest.mark.parametrize("targets", ["labels", 2], ids=["labels", "top2"])
def test_each_map_and_the_logits_equal_separate_calls(closed_form, targets):
    torch.manual_seed(0)
    model = GAPClassifier("resnet18", 5, in_channels=3, hires_cam=True).eval()
    images = torch.randn(3, 3, 32, 32)
    wanted = torch.tensor([0, 4, 2]) if targets == "labels" else targets
    methods = [m for m in CAM_METHODS if m not in SLOW]
    with torch.inference_mode():  # as in Lightning's test loop
        logits, maps = compute_cams(model, images, methods, wanted, closed_form=closed_form)
        expected_logits = model(images)
    assert torch.equal(logits, expected_logits.float())
    assert list(maps) == methods
    for method in methods:
        alone = compute_cam(model, images, method, wanted, closed_form=closed_form)
        assert torch.equal(maps[method], alone), method


def test_channel_methods_and_a_plain_torchvision_model():
    torch.manual_seed(0)
    model = torchvision.models.squeezenet1_1(num_classes=3).eval()
    images = torch.randn(2, 3, 48, 48)
    methods = ["cam", "gradcam", "scorecam", "ablationcam", "smoothgradcam++", "fullgrad"]
    with pytest.raises(Exception, match="method='cam' needs global average pooling"):
        compute_cams(model, images, methods, 1)  # squeezenet's head is a conv: no CAM
    methods.remove("cam")
    torch.manual_seed(1)
    logits, maps = compute_cams(model, images, methods, 1, max_batch=128)
    assert torch.equal(logits, model(images))
    for method in methods:
        torch.manual_seed(1)  # SmoothGrad-CAM++ draws its noise from the global generator
        assert torch.equal(maps[method], compute_cam(model, images, method, 1, max_batch=128))


def _unit(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    return flat / flat.max(1, keepdim=True).values.clamp_min(1e-12)


def test_under_bf16_autocast_the_forward_is_bf16_and_the_maps_float32_and_close():
    """trainer.precision=bf16-mixed: the forward runs in bf16 (Lightning's autocast), the maps
    are combined in float32 from the captured activations. Stated tolerance of the min-max
    normalised maps against a float32 run: 0.05 per pixel, 0.01 on average (FullGrad, which sums
    bias gradients over every layer: 0.3 / 0.03)."""
    torch.manual_seed(0)
    model = GAPClassifier("resnet18", 5, in_channels=3).eval()
    images = torch.randn(4, 3, 128, 128)  # 4x4 CAMs
    labels = torch.tensor([0, 1, 2, 3])
    methods = [m for m in CAM_METHODS if m not in SLOW]
    logits32, maps32 = compute_cams(model, images, methods, labels)
    captured = []
    hook = model.net.features.register_forward_hook(lambda m, i, out: captured.append(out))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits16, maps16 = compute_cams(model, images, methods, labels)
        alone = compute_cam(model, images, "gradcam", labels)
    hook.remove()
    assert logits16.dtype == torch.float32 and not torch.equal(logits16, logits32)  # bf16 ran
    # CAM = sum_c w_t[c] A_c summed in float32 over the bf16 activation (a bf16 sum: 1e-2 off).
    acts = captured[0]
    assert acts.dtype == torch.bfloat16
    weights = model.net.classifier.weight[labels]
    expected = torch.einsum("bc,bchw->bhw", weights, acts.float())
    assert torch.allclose(maps16["cam"], expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(logits16, logits32, rtol=0.05, atol=0.05)
    assert torch.equal(alone, maps16["gradcam"])
    for method in methods:
        assert maps16[method].dtype == torch.float32, method
        diff = (_unit(maps16[method]) - _unit(maps32[method])).abs()
        worst, mean = (0.3, 0.03) if method == "fullgrad" else (0.05, 0.01)
        assert diff.max() <= worst and diff.mean() <= mean, (method, diff.max(), diff.mean())
