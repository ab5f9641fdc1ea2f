"""Agreement with pytorch-grad-cam (a test/benchmark-only dependency) on the same model/input.

pytorch-grad-cam applies ReLU, min-max scales each map (eps 1e-7) and resizes it to the input
size; on TinyNet (stride 1) the resize is the identity, so ours is compared after ReLU + min-max.
"""

import pytest
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camlab.cam import compute_cam, minmax_normalize

PEERS = {
    "gradcam": pgc.GradCAM,
    "gradcam++": pgc.GradCAMPlusPlus,
    "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM,
    "hirescam": pgc.HiResCAM,
    "scorecam": pgc.ScoreCAM,
}


def _theirs(cls, model, layer, images, targets):
    with cls(model=model, target_layers=[layer]) as peer:
        out = peer(images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return torch.from_numpy(out)


# Score-CAM is slow in pytorch-grad-cam: one layer is enough for it.
CASES = [(m, layer) for m in PEERS for layer in ("features", "features.1")]
CASES = [(m, layer) for m, layer in CASES if not (m == "scorecam" and layer != "features")]


@pytest.mark.parametrize(("method", "layer_name"), CASES)
def test_matches_pytorch_grad_cam(tiny, images, method, layer_name):
    with torch.no_grad():
        # pytorch-grad-cam adds eps=1e-6 to Grad-CAM++'s denominator (ours has none); larger
        # gradients make that eps negligible, so both compute the same closed form.
        tiny.fc.weight.mul_(1000.0)
    targets = torch.tensor([0, 3, 4])
    ours = compute_cam(tiny, images, method, targets=targets, target_layer=layer_name)
    theirs = _theirs(PEERS[method], tiny, tiny.get_submodule(layer_name), images, targets)
    torch.testing.assert_close(minmax_normalize(ours.relu()), theirs, rtol=1e-4, atol=2e-4)


def test_eigencam_matches_up_to_sign(tiny, images):
    ours = compute_cam(tiny, images, "eigencam")
    with pgc.EigenCAM(model=tiny, target_layers=[tiny.features]) as peer:
        theirs = torch.from_numpy(peer(images, targets=None))
    for o, t in zip(ours, theirs, strict=True):
        candidates = [minmax_normalize(o.relu()), minmax_normalize((-o).relu())]
        assert any(torch.allclose(c, t, rtol=1e-4, atol=2e-4) for c in candidates)
