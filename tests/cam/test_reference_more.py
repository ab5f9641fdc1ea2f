"""Ablation-CAM, EigenGrad-CAM, FullGrad, Smooth Grad-CAM++, SS-CAM, IS-CAM, aug_smooth,
eigen_smooth and ViT / Swin token grids against the peers on the same model and input.

pytorch-grad-cam returns ReLU-ed maps, min-max scaled per map (eps 1e-7) and resized to the
input (``cv2.resize``, bilinear: equal to torch's ``align_corners=False`` to 1.2e-7, checked
here on 4->64, 12->12, 37x53 and 64->8); on TinyNet (stride 1) there is no resize, so ours is
compared after ReLU + min-max; on downsampling models after ReLU + resize + min-max. torchcam is
called with ``normalized=False`` and compared with ours directly. Where a peer has an ``eps`` in
a denominator, the classifier weights are scaled by 1000 so that the gradients are large enough
for it not to matter (as in test_reference.py). pytorch-grad-cam's SVD sign is arbitrary: its
projection is wrapped to use ours (positive correlation with the channel sum), so that the rest
is compared exactly.
"""

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchcam.methods as torchcam_methods
import torchvision
from pytorch_grad_cam import base_cam, eigen_grad_cam, fullgrad_cam, hirescam, layer_cam
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform
from torchvision.models import VisionTransformer

import camlab.cam.ablation as ablation
from camlab.cam import compute_cam, default_cam_layer, minmax_normalize, resize_maps

TARGETS = torch.tensor([0, 3, 4])


def _pgc(cls, model, layers, images, targets, *, init=None, **call):
    with cls(model=model, target_layers=layers, **(init or {})) as peer:
        out = peer(images, targets=[ClassifierOutputTarget(int(t)) for t in targets], **call)
    model.zero_grad(set_to_none=True)  # it writes .grad
    return torch.from_numpy(out)


def _close(ours, theirs, tol=2e-4):
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


@pytest.fixture
def signed_peer(monkeypatch):
    """pytorch-grad-cam's projections with our sign: correlating positively with X 1."""
    original = base_cam.get_2d_projection

    def project(batch: np.ndarray) -> np.ndarray:
        out = original(batch)
        for i, a in enumerate(batch):
            x = a.reshape(a.shape[0], -1).T
            x = x - x.mean(0)
            if (out[i].reshape(-1) * x.sum(1)).sum() < 0:
                out[i] = -out[i]
        return out

    for module in (base_cam, eigen_grad_cam, fullgrad_cam, hirescam, layer_cam):
        monkeypatch.setattr(module, "get_2d_projection", project)


@pytest.fixture
def pre_layer_shapes(monkeypatch):
    """Records the shape of the input that Ablation-CAM's passes feed the layers before."""
    shapes = []
    original = ablation._pre_layer_inputs

    def spy(inp):
        out = original(inp)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(ablation, "_pre_layer_inputs", spy)
    return shapes


@pytest.fixture
def big_grads(tiny):
    with torch.no_grad():
        tiny.fc.weight.mul_(1000.0)
    return tiny


# --- Ablation-CAM ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer_name", "closed_form"), [("features", True), ("features", False), ("features.1", True)]
)
def test_ablationcam_matches_pytorch_grad_cam(tiny, images, layer_name, closed_form):
    with torch.no_grad():  # channel 0 dead at "features": its (skipped) ablation changes nothing
        tiny.features[3].bias[0] = -100.0
    layer = tiny.get_submodule(layer_name)
    # "features" feeds GAP + linear: closed form or (closed_form=False) real passes; at
    # "features.1" the head is not after the layer, so real passes either way. max_batch=5
    # makes chunks that span images.
    ours = compute_cam(
        tiny, images, "ablationcam", TARGETS, layer_name, closed_form=closed_form, max_batch=5
    )
    theirs = _pgc(pgc.AblationCAM, tiny, [layer], images, TARGETS)
    _close(minmax_normalize(ours), theirs)


def test_ablationcam_shrunk_pre_layer_matches_pytorch_grad_cam(pre_layer_shapes):
    # resnet18's layer3 at 64 px: the layers before it run on a 32 px copy (checked by the spy),
    # layer4 + pool + fc on the ablated activations; pytorch-grad-cam runs full-size images.
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([5])
    ours = compute_cam(model, x, "ablationcam", targets, "layer3")
    assert pre_layer_shapes == [(1, 3, 32, 32)]
    theirs = _pgc(pgc.AblationCAM, model, [model.layer3], x, targets)
    _close(minmax_normalize(resize_maps(ours, 64)), theirs, tol=1e-3)


def _ablation_by_loop(model, layer, x, target):
    """Ablation-CAM of one image by hand: zero channel c (the last dim of tokens) per pass."""
    with torch.no_grad():
        out = {}
        handle = layer.register_forward_hook(lambda m, i, o: out.setdefault("a", o.clone()))
        y = model(x)[0, target]
        handle.remove()
        raw = out["a"]
        channels_last = raw.dim() == 3
        scores = []
        for c in range(raw.shape[-1] if channels_last else raw.shape[1]):
            ablated = raw.clone()
            if channels_last:
                ablated[..., c] = 0
            else:
                ablated[:, c] = 0
            handle = layer.register_forward_hook(lambda m, i, o, a=ablated: a)
            scores.append(model(x)[0, target])
            handle.remove()
        weights = (y - torch.stack(scores)) / y
    return raw, weights


def test_ablationcam_full_size_when_the_shrunk_copy_is_not_valid(pre_layer_shapes):
    # layer1.0.conv1 sits inside a residual block (the block's input is added after it) and a
    # ViT checks its image size: both must fall back to full-size passes, and stay exact.
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    raw, w = _ablation_by_loop(resnet, resnet.layer1[0].conv1, x, 7)
    got = compute_cam(resnet, x, "ablationcam", torch.tensor([7]), "layer1.0.conv1")
    expected = torch.einsum("c,chw->hw", w, raw[0]).relu()
    # (y - y_c) / y loses digits to cancellation; batched and single passes differ by ~1e-7.
    torch.testing.assert_close(got[0], expected, rtol=1e-3, atol=1e-4 * float(expected.max()))

    vit = VisionTransformer(64, 16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64).eval()
    with torch.no_grad():
        vit.heads.head.weight.normal_()  # torchvision initialises the head to zeros
    raw, w = _ablation_by_loop(vit, vit.encoder.layers[-1].ln_1, x, 3)
    grid = raw[0, 1:].T.reshape(32, 4, 4)  # class token dropped, patches row by row
    got = compute_cam(vit, x, "ablationcam", torch.tensor([3]))
    expected = torch.einsum("c,chw->hw", w, grid).relu()
    torch.testing.assert_close(got[0], expected, rtol=1e-3, atol=1e-4 * float(expected.max()))
    assert pre_layer_shapes == [(1, 3, 64, 64), (1, 3, 64, 64)]


# --- EigenGrad-CAM, FullGrad, eigen_smooth, aug_smooth ----------------------------------------


@pytest.mark.parametrize("layer_name", ["features", "features.1"])
def test_eigengradcam_matches_pytorch_grad_cam(tiny, images, signed_peer, layer_name):
    layer = tiny.get_submodule(layer_name)
    ours = compute_cam(tiny, images, "eigengradcam", TARGETS, layer_name)
    theirs = _pgc(pgc.EigenGradCAM, tiny, [layer], images, TARGETS)
    _close(minmax_normalize(ours.relu()), theirs)


def test_fullgrad_matches_pytorch_grad_cam_tiny(big_grads, images):
    # TinyNet: conv biases and a BatchNorm, all at input resolution.
    ours = compute_cam(big_grads, images, "fullgrad", TARGETS)
    assert ours.shape == (3, 12, 12)
    _close(minmax_normalize(ours), _pgc(pgc.FullGrad, big_grads, [], images, TARGETS))


@pytest.mark.parametrize("eigen_smooth", [False, True])
def test_fullgrad_matches_pytorch_grad_cam_resnet(signed_peer, eigen_smooth):
    # resnet18: 20 BatchNorms followed by in-place ReLUs, maps upsampled from 32..2 px.
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        model.fc.weight.mul_(1000.0)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([1, 8])
    ours = compute_cam(model, x, "fullgrad", targets, eigen_smooth=eigen_smooth)
    theirs = _pgc(pgc.FullGrad, model, [], x, targets, eigen_smooth=eigen_smooth)
    _close(minmax_normalize(ours), theirs, tol=1e-3)


EIGEN_PEERS = {
    "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM, "scorecam": pgc.ScoreCAM,
    "ablationcam": pgc.AblationCAM,
}  # fmt: skip


@pytest.mark.parametrize("method", list(EIGEN_PEERS))
def test_eigen_smooth_matches_pytorch_grad_cam(big_grads, images, signed_peer, method):
    layer = big_grads.features[1]
    ours = compute_cam(big_grads, images, method, TARGETS, "features.1", eigen_smooth=True)
    theirs = _pgc(EIGEN_PEERS[method], big_grads, [layer], images, TARGETS, eigen_smooth=True)
    _close(minmax_normalize(ours.relu()), theirs)
    plain = compute_cam(big_grads, images, method, TARGETS, "features.1")
    assert not torch.allclose(minmax_normalize(ours.relu()), minmax_normalize(plain.relu()))


@pytest.mark.parametrize(
    ("method", "peer"),
    [("gradcam", pgc.GradCAM), ("gradcam++", pgc.GradCAMPlusPlus), ("layercam", pgc.LayerCAM)],
)
def test_aug_smooth_matches_pytorch_grad_cam(big_grads, images, method, peer):
    # ReLU-ed methods: pytorch-grad-cam ReLUs every map before scaling, camlab keeps the signed
    # ones (cam, hirescam, eigen*) signed, so those are compared elsewhere without aug_smooth.
    ours = compute_cam(big_grads, images, method, TARGETS, "features.1", aug_smooth=True)
    theirs = _pgc(peer, big_grads, [big_grads.features[1]], images, TARGETS, aug_smooth=True)
    _close(ours, theirs)  # the mean of 6 min-max scaled maps on both sides, not rescaled


# --- torchcam's Smooth Grad-CAM++, SS-CAM, IS-CAM ----------------------------------------------


def _torchcam(cls, model, layer_name, images, targets, seed=None, **init):
    with cls(model, layer_name, input_shape=tuple(images.shape[1:]), **init) as extractor:
        with torch.inference_mode(cls is not torchcam_methods.SmoothGradCAMpp):
            model(images)  # torchcam hooks the input and activation of the user's forward
        if seed is not None:
            torch.manual_seed(seed)
        out = extractor(class_idx=targets.tolist(), normalized=False)[0]
    return out.detach()


@pytest.mark.parametrize("layer_name", ["features", "features.1"])
def test_smoothgradcampp_matches_torchcam(big_grads, images, layer_name):
    # Same noise: both draw it from the default generator, seeded identically before the call,
    # one [3, 3, 12, 12] tensor per sample in the same order. At "features" (GAP + linear after
    # it) ours runs only the last noisy copy but still draws the other samples' noise.
    kwargs = {"num_samples": 3, "noise_std": 0.3}
    torch.manual_seed(7)
    ours = compute_cam(big_grads, images, "smoothgradcam++", TARGETS, layer_name, **kwargs)
    theirs = _torchcam(
        torchcam_methods.SmoothGradCAMpp, big_grads, layer_name, images, TARGETS, seed=7,
        num_samples=3, std=0.3,
    )  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))
    torch.manual_seed(8)  # other noise, other map: the noise is really used
    other = compute_cam(big_grads, images, "smoothgradcam++", TARGETS, layer_name, **kwargs)
    assert not torch.allclose(ours, other)


@pytest.mark.parametrize("layer_name", ["features", "features.1"])
def test_sscam_matches_torchcam(tiny, images, layer_name):
    # Same noise: seeded identically; torchcam draws one [3, C, 12, 12] tensor per sample, ours
    # the same numbers in chunks of 5 (image, channel) masks (12 * 12 = 144 is a multiple of 16,
    # the CPU sampler's block, so chunked draws continue the same stream).
    torch.manual_seed(11)
    ours = compute_cam(tiny, images, "sscam", TARGETS, layer_name, num_samples=3, max_batch=5)
    theirs = _torchcam(
        torchcam_methods.SSCAM, tiny, layer_name, images, TARGETS, seed=11, num_samples=3,
        batch_size=7,
    )  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


@pytest.mark.parametrize("layer_name", ["features", "features.1"])
def test_iscam_matches_torchcam(tiny, images, layer_name):
    with torch.no_grad():  # a constant channel at "features": the shared black-image score
        tiny.features[3].bias[0] = -100.0
    ours = compute_cam(tiny, images, "iscam", TARGETS, layer_name, num_samples=4, max_batch=5)
    theirs = _torchcam(torchcam_methods.ISCAM, tiny, layer_name, images, TARGETS, num_samples=4)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


# --- ViT / Swin ------------------------------------------------------------------------------

VIT_PEERS = {
    "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM, "eigengradcam": pgc.EigenGradCAM,
}  # fmt: skip


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    with torch.no_grad():
        # torchvision initialises the head to zeros; large weights make gradients large
        # enough for pytorch-grad-cam's Grad-CAM++ eps (1e-6) not to matter.
        model.heads.head.weight.normal_(0.0, 1000.0)
    return model


def test_vit_b_16_grid_and_default_layer(vit):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    assert default_cam_layer(vit) == "encoder.layers.encoder_layer_11.ln_1"
    auto = compute_cam(vit, x, "gradcam", targets=torch.tensor([2, 7]))
    assert auto.shape == (2, 4, 4) and (auto > 0).any()  # 64 px / patch 16, class token dropped
    manual = compute_cam(
        vit,
        x,
        "gradcam",
        torch.tensor([2, 7]),
        reshape_transform=lambda t: vit_reshape_transform(t, 4, 4),
    )
    torch.testing.assert_close(auto, manual)


@pytest.mark.parametrize("method", list(VIT_PEERS))
def test_vit_b_16_matches_pytorch_grad_cam(vit, signed_peer, method):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([2, 7])
    ours = compute_cam(vit, x, method, targets)
    theirs = _pgc(
        VIT_PEERS[method], vit, [vit.encoder.layers[-1].ln_1], x, targets,
        init={"reshape_transform": lambda t: vit_reshape_transform(t, 4, 4)},
    )  # fmt: skip
    # LayerNorm outputs have negative channel sums S_c, so Grad-CAM++'s 2 + S_c G comes near 0
    # at some tokens, where pytorch-grad-cam's eps (1e-6 / G^2) still moves the weights ~0.3%.
    tol = 5e-3 if method == "gradcam++" else 2e-4
    _close(minmax_normalize(resize_maps(ours.relu(), 64)), theirs, tol=tol)


def test_swin_t_matches_pytorch_grad_cam_and_has_a_cam():
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    targets = torch.tensor([4, 1])
    assert default_cam_layer(model) == "norm"
    ours = compute_cam(model, x, "gradcam", targets, closed_form=False)
    assert ours.shape == (2, 2, 2)  # channels-last [B, 2, 2, 768] permuted
    theirs = _pgc(
        pgc.GradCAM, model, [model.norm], x, targets,
        init={"reshape_transform": lambda t: t.permute(0, 3, 1, 2)},
    )  # fmt: skip
    _close(minmax_normalize(resize_maps(ours, 64)), theirs)
    # ``norm`` feeds GAP + ``head``: CAM exists and Grad-CAM is ReLU(CAM) / (h*w).
    cam = compute_cam(model, x, "cam", targets)
    torch.testing.assert_close(ours, cam.relu() / 4, rtol=1e-4, atol=1e-6)
