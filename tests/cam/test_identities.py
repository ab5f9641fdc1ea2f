"""Exact identities and hand-computed values, not just shapes."""

import copy

import pytest
import torch
from cam_helpers import few_samples
from torch import nn

from camlab.cam import CAM_METHODS, cam_from_features, compute_cam
from camlab.errors import CamlabError
from camlab.models.backbones import build_gapnet


@pytest.fixture(scope="module")
def gapnet() -> nn.Module:
    torch.manual_seed(0)
    return build_gapnet("resnet18", num_classes=7).eval()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def _cam_and_hw(model, x, targets):
    cam = compute_cam(model, x, "cam", targets=targets)
    return cam, cam.shape[-2] * cam.shape[-1]


@pytest.mark.parametrize("closed_form", [True, False])
def test_gradcam_is_relu_cam_over_hw(gapnet, x64, closed_form):
    # dy_t/dA_c(i,j) = w_t[c] / (h*w) for GAP + linear, so alpha_c = w_t[c] / (h*w) and
    # Grad-CAM = ReLU(sum_c w_t[c] A_c) / (h*w) = ReLU(CAM) / (h*w), the bias dropping out.
    targets = torch.tensor([1, 5])
    cam, hw = _cam_and_hw(gapnet, x64, targets)
    grad = compute_cam(gapnet, x64, "gradcam", targets=targets, closed_form=closed_form)
    assert hw == 4  # resnet18 at 64 px: 2x2
    torch.testing.assert_close(grad, cam.relu() / hw, rtol=1e-5, atol=1e-7)
    assert (cam < 0).any() and (grad > 0).any()  # the ReLU is exercised


@pytest.mark.parametrize("closed_form", [True, False])
def test_hirescam_is_cam_over_hw_and_sums_to_logit(gapnet, x64, closed_form):
    targets = torch.tensor([0, 6])
    cam, hw = _cam_and_hw(gapnet, x64, targets)
    hires = compute_cam(gapnet, x64, "hirescam", targets=targets, closed_form=closed_form)
    torch.testing.assert_close(hires, cam / hw, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        logits = gapnet(x64)
    expected = logits[[0, 1], targets] - gapnet.classifier.bias[targets]
    torch.testing.assert_close(hires.sum((1, 2)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam", "layercam"])
def test_closed_form_matches_autograd(gapnet, x64, method):
    fast = compute_cam(gapnet, x64, method, targets=2, closed_form=True)
    slow = compute_cam(gapnet, x64, method, targets=2, closed_form=False)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-6)


class _Protocol(nn.Module):
    """features = identity, so the activation is the input: values can be checked by hand."""

    cam_layer = "features"

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = head
        self.fc = nn.Linear(2, 2)

    @property
    def gap_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.features(x)).mean((2, 3)))


def _hand_model(head: nn.Module) -> _Protocol:
    model = _Protocol(head)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, 2.0], [2.0, -2.0]]))
        model.fc.bias.copy_(torch.tensor([0.5, -9.0]))
    return model


_A = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # [1, 2, 2, 2]


def test_cam_by_hand():
    model = _hand_model(nn.Identity())
    # logits: class 0 = 1*1.5 + 2*1 + 0.5 = 4; class 1 = 2*1.5 - 2*1 - 9 = -8 -> top-1 is 0.
    cam = compute_cam(model, _A, "cam")
    torch.testing.assert_close(cam, torch.tensor([[[3.0, 4.0], [2.0, 5.0]]]))
    cam1 = compute_cam(model, _A, "cam", targets=torch.tensor([1]))
    torch.testing.assert_close(cam1, torch.tensor([[[0.0, 2.0], [-2.0, 4.0]]]))
    both = cam_from_features(_A, model.fc.weight, targets=2, bias=model.fc.bias)
    torch.testing.assert_close(both, torch.stack([cam, cam1], 1))


class _Square(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * a


def test_gradcampp_by_hand():
    # Class 1: y = 2 mean(A0^2) - 2 mean(A1^2)  ->  G0 = 2*2*A0/4 = A0, G1 = -A1 (all < 0).
    # S0 = 6, alpha0(i,j) = 1/(2 + S0 G0) where G0 != 0: 1/8, 1/14, 0, 1/20.
    # w0 = 1/8*1 + 1/14*2 + 1/20*3 = 117/280; w1 = 0 (ReLU(G1) = 0). L = ReLU(w0 A0).
    model = _hand_model(_Square())
    out = compute_cam(model, _A, "gradcam++", targets=torch.tensor([1]))
    torch.testing.assert_close(out, 117 / 280 * _A[:, 0], rtol=1e-6, atol=1e-7)
    # XGrad-CAM: w0 = sum(G0 A0)/S0 = 14/6, w1 = sum(G1 A1)/S1 = -4/4; L = ReLU(14/6 A0 - A1).
    out = compute_cam(model, _A, "xgradcam", targets=torch.tensor([1]))
    torch.testing.assert_close(out, (14 / 6 * _A[:, 0] - _A[:, 1]).relu(), rtol=1e-6, atol=1e-6)
    # LayerCAM: ReLU(G0) A0 + ReLU(G1) A1 = A0^2.
    out = compute_cam(model, _A, "layercam", targets=torch.tensor([1]))
    torch.testing.assert_close(out, _A[:, 0] ** 2)


def test_cam_from_features_matches_compute_cam(gapnet, x64):
    with torch.no_grad():
        logits, feats = gapnet.forward_with_features(x64)
    fast = cam_from_features(feats, gapnet.classifier.weight, 3, bias=gapnet.classifier.bias)
    full = compute_cam(gapnet, x64, "cam", targets=3)
    torch.testing.assert_close(fast, full)
    top = logits.topk(3, 1).indices
    torch.testing.assert_close(fast, compute_cam(gapnet, x64, "cam", targets=top))


def test_eigencam_matches_numpy_svd(tiny, images):
    np = pytest.importorskip("numpy")
    acts = {}
    handle = tiny.features.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    with torch.no_grad():
        tiny(images)
    handle.remove()
    ours = compute_cam(tiny, images, "eigencam")
    for a, got in zip(acts["a"].numpy(), ours.numpy(), strict=True):
        x = a.reshape(a.shape[0], -1).T
        x = x - x.mean(0)
        proj = (x @ np.linalg.svd(x, full_matrices=True)[2][0]).reshape(a.shape[1:])
        np.testing.assert_allclose(np.abs(got), np.abs(proj), rtol=1e-4, atol=1e-4)
        assert (got * x.sum(1).reshape(a.shape[1:])).sum() >= 0  # the documented sign


def test_scorecam_matches_per_channel_loop(tiny, images):
    with torch.no_grad():  # channel 0 dead everywhere: exercises the shared black-image score
        tiny.features[3].bias[0] = -100.0
    acts = {}
    handle = tiny.features.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    with torch.no_grad():
        logits = tiny(images)
        handle.remove()
        a, t = acts["a"], logits.argmax(1)
        assert (a[:, 0] == 0).all()
        weights = torch.empty(a.shape[:2])
        for b in range(a.shape[0]):
            for c in range(a.shape[1]):
                m = a[b, c]
                m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else m * 0
                weights[b, c] = tiny(images[b : b + 1] * m)[0, t[b]]
        expected = torch.einsum("bc,bchw->bhw", weights.softmax(1), a).relu()
    got = compute_cam(tiny, images, "scorecam", max_batch=5)  # chunks across images
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_output_size_and_normalize(gapnet, x64, tiny, images):
    for method in CAM_METHODS:
        # SS-CAM / IS-CAM: Score-CAM's passes again (1024 forwards): on TinyNet instead.
        model, x = (tiny, images) if method in ("sscam", "iscam") else (gapnet, x64)
        kwargs = few_samples(method)
        out = compute_cam(model, x, method, output_size=(32, 48), normalize=True, **kwargs)
        assert out.shape == (x.shape[0], 32, 48) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    zero = compute_cam(_hand_model(nn.Identity()), torch.ones(1, 2, 3, 3), "cam", normalize=True)
    assert torch.equal(zero, torch.zeros(1, 3, 3))  # constant map -> zeros, not NaN


def test_ablationcam_by_hand():
    # Class 0: y = 1*mean(A0) + 2*mean(A1) + 0.5 = 1.5 + 2 + 0.5 = 4. Zeroing A0 gives 2.5, A1
    # gives 2: w0 = (4 - 2.5)/4 = 3/8, w1 = (4 - 2)/4 = 1/2; L = ReLU(3/8 A0 + 1/2 A1).
    model = _hand_model(nn.Identity())
    expected = (3 / 8 * _A[:, 0] + 1 / 2 * _A[:, 1]).relu()
    for closed_form in (True, False):  # exact drop from the head / real ablated passes
        out = compute_cam(model, _A, "ablationcam", closed_form=closed_form)
        torch.testing.assert_close(out, expected)


def test_ablationcam_closed_form_matches_passes(gapnet, x64):
    # y_t(A0 = 0) = y_t - w_t[c] mean(A_c) for GAP + linear; the passes (on a 32 px copy of the
    # layers before layer4, then layer4's output replaced) measure the same drop, as a difference
    # of two float32 logits. The weights w_c = drop / y_t amplify that rounding by S / |y_t|
    # (S: the sum of the logit's terms' magnitudes), which a random network's near-zero logits
    # make ~10^4 and CPU-dependent. A bias of 10 on every logit (the drops do not depend on it)
    # keeps y_t ~ 10 and S / |y_t| ~ 1, on any CPU.
    net = copy.deepcopy(gapnet)
    with torch.no_grad():
        net.classifier.bias += 10.0
    fast = compute_cam(net, x64, "ablationcam", targets=2, closed_form=True)  # [B, 2, h, w]
    slow = compute_cam(net, x64, "ablationcam", targets=2, closed_form=False)
    with torch.no_grad():
        logits, acts = net.forward_with_features(x64)
    top = logits.topk(2, dim=1).indices  # the classes targets=2 explains
    terms = net.classifier.weight[top] * acts.mean((2, 3))[:, None]  # [B, 2, C]
    s = terms.abs().sum(2) + net.classifier.bias[top].abs()
    y = logits.gather(1, top)
    # Rounding of each ablated logit ~ sqrt(C) eps S (a sum of C terms), divided by y_t; the C
    # channels' errors are independent, so a pixel's sum over them grows with the root sum of
    # squares of its activations. 4x for the unablated logit and the spatial means.
    c, eps = acts.shape[1], torch.finfo(torch.float32).eps
    rss = acts.square().sum(1).sqrt().amax((1, 2))[:, None]
    tol = 4 * c**0.5 * eps * s / y.abs() * rss
    err = (fast - slow).abs().amax((2, 3))
    assert (err <= tol).all(), (err, tol, fast.abs().amax((2, 3)))
    assert (tol < 0.01 * fast.abs().amax((2, 3))).all()  # the check still has teeth


@pytest.mark.parametrize("closed_form", [True, False])
def test_smoothgradcampp_without_noise_is_gradcampp(gapnet, x64, closed_form):
    # noise_std=0: every copy is the image; at a GAP + linear layer G is constant over space,
    # so torchcam's sum_ab A(a,b) G^3 equals Grad-CAM++'s S_c G^3 and the maps coincide.
    smooth = compute_cam(
        gapnet, x64, "smoothgradcam++", targets=2, noise_std=0.0, closed_form=closed_form
    )
    plain = compute_cam(gapnet, x64, "gradcam++", targets=2, closed_form=closed_form)
    torch.testing.assert_close(smooth, plain, rtol=1e-4, atol=1e-6 * float(plain.abs().max()))


def test_sampling_options_are_checked(tiny, images):
    with pytest.raises(CamlabError, match="noise_std does not apply to method 'gradcam'"):
        compute_cam(tiny, images, "gradcam", noise_std=0.1)
    with pytest.raises(CamlabError, match="num_samples=0 is invalid"):
        compute_cam(tiny, images, "iscam", num_samples=0)
