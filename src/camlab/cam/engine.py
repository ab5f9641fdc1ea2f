"""``compute_cam``: any registered method on any classifier, without side effects on the model."""

import torch
from torch import Tensor, nn

from camlab.cam.activation import cam_from_weights
from camlab.cam.capture import cam_session, forward_capture
from camlab.cam.context import CamInputs, autograd_grads
from camlab.cam.layers import find_linear_head, resolve_layer, unwrap_model, verify_head
from camlab.cam.postprocess import minmax_normalize, resize_maps
from camlab.cam.registry import get_method
from camlab.cam.targets import Targets, resolve_targets
from camlab.errors import CamlabError


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
        method: one of ``METHODS``: ``cam``, ``gradcam``, ``gradcam++``, ``xgradcam``,
            ``layercam``, ``hirescam``, ``scorecam``, ``eigencam``.
        targets: ``None`` = top-1 class; tensor ``[B]`` = one class per image (e.g. ground
            truth); ``int`` k = the top-k classes, ranked; tensor ``[B, k]`` = k classes each.
        target_layer: module name (e.g. ``"layer4"``) or module; ``None`` = the CAM layer.
        output_size: ``None`` = feature-map resolution ``(h, w)``; else bilinear to this size.
        normalize: per-map min-max to [0, 1] (a constant map gives zeros).
        closed_form: for a layer feeding a verified GAP + linear head, use the exact gradient
            ``w_t / (h*w)`` instead of a backward pass; ``False`` forces autograd.
        max_batch: Score-CAM: most masked images per forward pass (bounds memory).

    Returns:
        float maps on the images' device: ``[B, h, w]`` for ``None`` / ``[B]`` targets,
        ``[B, k, h, w]`` for ``int`` / ``[B, k]`` targets. Signed for ``cam``, ``hirescam``,
        ``eigencam``; ReLU-ed as in their papers for the others.

    Raises:
        CamlabError: unknown method or layer, class index out of range, or ``cam`` on a model
            whose head after the layer is not GAP + linear.
    """
    spec = get_method(method)
    net = unwrap_model(model)
    layer_name, layer = resolve_layer(net, target_layer)
    candidate = find_linear_head(net, layer_name)
    if spec.needs_head and candidate is None:
        _no_head(net, layer_name)
    with cam_session(net, images.device):
        # Tensors made under inference_mode cannot enter autograd; a clone outside it can.
        x = images.clone() if images.is_inference() else images
        cap = forward_capture(net, layer, x, track=spec.needs_grads)
        head = verify_head(candidate, cap.acts, cap.logits)
        if spec.needs_head and head is None:
            _no_head(net, layer_name)
        idx, keep_k = resolve_targets(targets, cap.logits)
        inp = CamInputs(
            acts=cap.acts.detach().float(),
            targets=idx,
            logits=cap.logits.detach(),
            head=head,
            images=x,
            run_model=net,
            autograd_grads=autograd_grads(cap.logits, cap.acts) if spec.needs_grads else None,
            closed_form=closed_form,
            max_batch=max_batch,
        )
        maps = spec.fn(inp)
    return _finish(maps, keep_k, output_size, normalize)


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
