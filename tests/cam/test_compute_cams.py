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
