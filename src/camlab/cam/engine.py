"""``compute_cam``: any registered method on any classifier, without side effects on the model."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from camlab.cam.activation import cam_from_weights
from camlab.cam.capture import cam_session, float32_maps, forward_capture
from camlab.cam.context import CamInputs, Transform, autograd_grads
from camlab.cam.layers import find_linear_head, resolve_layer, unwrap_model, verify_head
from camlab.cam.postprocess import minmax_normalize, resize_maps
from camlab.cam.registry import CAM_METHODS, CamMethod, get_method
from camlab.cam.smoothing import AUGMENTATIONS, augment
from camlab.cam.targets import Targets, resolve_targets
from camlab.cam.tokens import token_transform
from camlab.errors import CamlabError
from camlab.evalmode import eval_mode


def compute_cam(
    model: nn.Module,
    images: Tensor,
    method: str = "gradcam",
    targets: Targets = None,
    target_layer: str | nn.Module | None = None,
    output_size: int | tuple[int, int] | None = None,
    normalize: bool = False,
    *,
    closed_form: bool = True,
    max_batch: int = 64,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    num_samples: int | None = None,
    noise_std: float | None = None,
    reshape_transform: Transform | None = None,
) -> Tensor:
    """Class activation maps of ``images`` under ``model``.

    The call has no side effects: it runs the model in eval mode (BatchNorm statistics and
    dropout untouched) and restores every module's train/eval flag and the RNG state; hooks
    exist only during the call; gradients are taken w.r.t. the hooked activation only
    (``torch.autograd.grad``), so no parameter's ``.grad`` changes. It works under
    ``torch.no_grad`` and ``torch.inference_mode`` (e.g. in Lightning's validation loop) and
    on DDP-wrapped models (the inner module is called, so no DDP collective runs).

    Args:
        model: a classifier returning logits ``[B, K]``; DDP / DataParallel / compiled wrappers
            are unwrapped. Models may declare ``cam_layer`` and ``gap_classifier`` (ours do).
        images: model input ``[B, C, H, W]``.
        method: one of ``CAM_METHODS``: ``cam``, ``gradcam``, ``gradcam++``, ``xgradcam``,
            ``layercam``, ``hirescam``, ``scorecam``, ``eigencam``, ``ablationcam``,
            ``eigengradcam``, ``fullgrad``, ``smoothgradcam++``, ``sscam``, ``iscam``.
        targets: ``None`` = top-1 class; tensor ``[B]`` = one class per image (e.g. ground
            truth); ``int`` k = the top-k classes, ranked; tensor ``[B, k]`` = k classes each.
        target_layer: module name (e.g. ``"layer4"``) or module; ``None`` = the CAM layer
            (torchvision ViT: the last block's ``ln_1``; Swin: ``norm``). FullGrad ignores it.
        output_size: ``None`` = feature-map resolution ``(h, w)`` (FullGrad: the input's);
            else bilinear to this size.
        normalize: per-map min-max to [0, 1] (a constant map gives zeros).
        closed_form: for a layer feeding a verified GAP + linear head, use the exact gradient
            ``w_t / (h*w)`` (and Ablation-CAM's exact score drop) instead of backward/forward
            passes; ``False`` forces them.
        max_batch: Score-CAM, SS-CAM, IS-CAM, Ablation-CAM: most masked / ablated copies per
            forward pass (bounds memory).
        aug_smooth: average the min-max scaled maps of 6 augmentations (horizontal flip x
            brightness 0.9 / 1 / 1.1), as pytorch-grad-cam; targets from the plain image.
        eigen_smooth: first principal component of the per-channel contributions instead of
            their sum, as pytorch-grad-cam (``camlab.cam.smoothing``).
        num_samples: SmoothGrad-CAM++ / SS-CAM noise samples, IS-CAM steps (``None``:
            torchcam's 4 / 35 / 10).
        noise_std: SmoothGrad-CAM++ / SS-CAM noise standard deviation (``None``: 0.3 / 2.0).
        reshape_transform: layer output -> ``[B, C, h, w]`` for token outputs, as
            pytorch-grad-cam's; ``None`` = chosen for torchvision ViT / Swin
            (``camlab.cam.tokens``), else none.

    Returns:
        float maps on the images' device: ``[B, h, w]`` for ``None`` / ``[B]`` targets,
        ``[B, k, h, w]`` for ``int`` / ``[B, k]`` targets. Signed for ``cam``, ``hirescam``,
        ``eigencam``, ``eigengradcam``; ReLU-ed as in their papers for the others. Noise
        (SmoothGrad-CAM++, SS-CAM) is drawn from the default generator, whose state is then
        restored: seed it (``torch.manual_seed``) to choose the noise; repeated calls repeat it.

    Raises:
        CamlabError: unknown method or layer, class index out of range, ``cam`` on a model
            whose head after the layer is not GAP + linear, or sampling options given to a
            method without sampling.
    """
    spec = get_method(method)
    samples = _sampling(method.lower(), spec, num_samples, noise_std)
    fn = spec.eigen_fn if eigen_smooth else spec.fn
    net = unwrap_model(model)
    layer, candidate = None, None
    if spec.forward is None:
        layer_name, layer = resolve_layer(net, target_layer)
        candidate = find_linear_head(net, layer_name)
        if spec.needs_head and candidate is None:
            _no_head(net, layer_name)

    def run(x: Tensor, wanted: Targets) -> tuple[Tensor, Tensor, bool]:
        transform = None
        if spec.forward is not None:
            cap, head = spec.forward(net, x), None
        else:
            transform = reshape_transform or token_transform(net, layer, tuple(x.shape))
            cap = forward_capture(net, layer, x, spec.needs_grads, transform)
            head = verify_head(candidate, cap.acts, cap.logits)
            if spec.needs_head and head is None:
                _no_head(net, layer_name)
        with float32_maps(x.device):
            idx, keep_k = resolve_targets(wanted, cap.logits)
            grads = autograd_grads(cap.logits, cap.raw, transform) if spec.needs_grads else None
            inp = _inputs(
                cap, idx, head, x, net, grads, layer, transform, closed_form, max_batch, **samples
            )
            return fn(inp), idx, keep_k

    with cam_session(net, images.device):
        # Tensors made under inference_mode cannot enter autograd; a clone outside it can.
        x = images.clone() if images.is_inference() else images
        maps, idx, keep_k = run(x, targets)
        if aug_smooth:
            # The plain image first: its targets are explained in every augmentation.
            total = minmax_normalize(maps.detach().float())
            for flip, factor in AUGMENTATIONS:
                if flip or factor != 1.0:
                    aug = run(augment(x, flip, factor), idx)[0].detach().float()
                    total = total + minmax_normalize(aug.flip(-1) if flip else aug)
            maps = total / len(AUGMENTATIONS)
    return _finish(maps, keep_k, output_size, normalize)


def compute_cams(
    model: nn.Module,
    images: Tensor,
    methods: list[str],
    targets: Targets = None,
    target_layer: str | nn.Module | None = None,
    *,
    closed_form: bool = True,
    max_batch: int = 64,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The logits and several methods' maps from **one** forward pass of ``images``.

    The methods that read the target layer's activation (CAM, the Grad-CAM family, Eigen-CAM,
    Score-CAM, Ablation-CAM, ...) share one capture and one target resolution; the gradient
    ones share its post-layer graph (or the closed form). Methods with their own forward
    (FullGrad) or their own noise (SmoothGrad-CAM++, SS-CAM) run as ``compute_cam`` would.
    Every map equals ``compute_cam(model, images, method, targets, target_layer)``'s and the
    logits equal ``model(images)``'s, bit for bit (tests/cam/test_identities.py).

    Args:
        model, images, targets, target_layer, closed_form, max_batch: as in ``compute_cam``.
        methods: names in ``CAM_METHODS``.

    Returns:
        ``(logits [B, K] float, {method: maps})``, maps shaped as ``compute_cam`` returns them.
    """
    specs = {name: get_method(name) for name in methods}
    shared = [m for m, spec in specs.items() if spec.forward is None and not spec.samples]
    net = unwrap_model(model)
    out: dict[str, Tensor] = {}
    logits = None
    if shared:
        layer_name, layer = resolve_layer(net, target_layer)
        candidate = find_linear_head(net, layer_name)
        track = any(specs[m].needs_grads for m in shared)
        with cam_session(net, images.device):
            x = images.clone() if images.is_inference() else images
            transform = token_transform(net, layer, tuple(x.shape))
            cap = forward_capture(net, layer, x, track, transform)
            head = verify_head(candidate, cap.acts, cap.logits)
            with float32_maps(x.device):
                idx, keep_k = resolve_targets(targets, cap.logits)
                grads = _once(autograd_grads(cap.logits, cap.raw, transform)) if track else None
                for name in shared:
                    spec = specs[name]
                    if spec.needs_head and head is None:
                        _no_head(net, layer_name)
                    inp = _inputs(
                        cap, idx, head, x, net, grads, layer, transform, closed_form, max_batch
                    )
                    out[name] = _finish(spec.fn(inp), keep_k, None, False)
            logits = cap.logits.detach().float()
    for name in methods:
        if name not in out:
            out[name] = compute_cam(
                model, images, name, targets, target_layer,
                closed_form=closed_form, max_batch=max_batch,
            )  # fmt: skip
    if logits is None:
        with torch.no_grad(), eval_mode(net):
            logits = net(images).detach().float()
    return logits, {name: out[name] for name in methods}


def _inputs(
    cap,
    idx,
    head,
    x,
    net,
    grads,
    layer,
    transform,
    closed_form: bool,
    max_batch: int,
    **samples: float,
) -> CamInputs:
    """What a method's ``fn`` reads, from one capture."""
    return CamInputs(
        acts=cap.acts.detach().float(), targets=idx, logits=cap.logits.detach().float(),
        head=head, images=x, run_model=net, autograd_grads=grads, closed_form=closed_form,
        max_batch=max_batch, layer=layer, raw=cap.raw.detach().float(), transform=transform,
        extra=cap.extra, **samples,
    )  # fmt: skip


def _once(grads: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The gradient provider, run once: its graph is freed after the backward, and every method
    of one ``compute_cams`` call asks for the same targets."""
    cache: list[Tensor] = []

    def get(targets: Tensor) -> Tensor:
        if not cache:
            cache.append(grads(targets))
        return cache[0]

    return get


def _sampling(
    name: str, spec: CamMethod, num_samples: int | None, noise_std: float | None
) -> dict[str, float]:
    """``num_samples`` / ``noise_std`` for ``CamInputs``: the method's defaults unless given."""
    out: dict[str, float] = {}
    for key, value in (("num_samples", num_samples), ("noise_std", noise_std)):
        if value is None:
            if key in spec.samples:
                out[key] = spec.samples[key]
            continue
        if key not in spec.samples:
            users = [m for m, s in CAM_METHODS.items() if key in s.samples]
            raise CamlabError(
                f"{key} does not apply to method '{name}'; it is used by {', '.join(users)}."
            )
        need = "an int >= 1" if key == "num_samples" else ">= 0"
        bad_n = key == "num_samples" and (
            isinstance(value, bool) or int(value) != value or value < 1
        )
        if bad_n or (key == "noise_std" and value < 0):
            raise CamlabError(f"{key}={value!r} is invalid: it must be {need}.")
        out[key] = int(value) if key == "num_samples" else float(value)
    return out


def cam_from_features(
    feats: Tensor,
    weight: Tensor,
    targets: Targets = None,
    bias: Tensor | None = None,
    output_size: int | tuple[int, int] | None = None,
    normalize: bool = False,
) -> Tensor:
    """CAM from feature maps already computed (e.g. by the validation forward pass).

    Args:
        feats: CAM-layer feature maps ``[B, C, h, w]`` that feed GAP + linear.
        weight: linear weights ``[K, C]``.
        targets: as in ``compute_cam``; ``None`` / ``int`` rank classes by
            ``weight @ mean_hw(feats) + bias``.
        bias: linear bias ``[K]`` (only affects which classes are top-k).
        output_size: as in ``compute_cam``.
        normalize: as in ``compute_cam``.

    Returns:
        ``[B, h, w]`` or ``[B, k, h, w]`` as in ``compute_cam``, on the features' device.
    """
    with torch.no_grad():
        feats, weight = feats.detach().float(), weight.detach().float()
        logits = feats.mean((2, 3)) @ weight.t()
        if bias is not None:
            logits = logits + bias.detach().float()
        idx, keep_k = resolve_targets(targets, logits)
        maps = cam_from_weights(feats, weight[idx])
    return _finish(maps, keep_k, output_size, normalize)


def _finish(
    maps: Tensor, keep_k: bool, output_size: int | tuple[int, int] | None, normalize: bool
) -> Tensor:
    maps = maps.detach().float()
    if not keep_k:
        maps = maps[:, 0]
    if output_size is not None:
        maps = resize_maps(maps, output_size)
    return minmax_normalize(maps) if normalize else maps


def _no_head(net: nn.Module, layer_name: str) -> None:
    raise CamlabError(
        f"method='cam' needs global average pooling + one linear layer right after the target "
        f"layer '{layer_name}', and {type(net).__name__}'s head after it is not of that form "
        "(its logits are not a linear function of the pooled features). Use method='gradcam' "
        "(for a GAP + linear head it equals ReLU(CAM) / (h*w)) or another gradient method."
    )
