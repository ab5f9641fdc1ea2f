"""Score-CAM (Wang et al., CVPR-W 2020, arXiv:1910.01279) and its smoothed variants SS-CAM and
IS-CAM, batched with a memory bound."""

import torch
import torch.nn.functional as F
from torch import Tensor

from camlab.cam.context import CamInputs


def channel_masks(acts: Tensor, size: tuple[int, int]) -> Tensor:
    """Each channel upsampled to the image size and min-max scaled to [0, 1] (constant -> 0).

    Args:
        acts: ``[N, C, h, w]``.
        size: image ``(H, W)``.

    Returns:
        ``[N, C, H, W]``.
    """
    up = F.interpolate(acts.float(), size=size, mode="bilinear", align_corners=False)
    lo = up.amin((2, 3), keepdim=True)
    span = up.amax((2, 3), keepdim=True) - lo
    return torch.where(span > 0, (up - lo) / torch.where(span > 0, span, 1), 0)


def scorecam(inp: CamInputs) -> Tensor:
    """Score-CAM maps ``[B, k, h, w]`` (see ``scorecam_weights``)."""
    return torch.einsum("bkc,bchw->bkhw", scorecam_weights(inp), inp.acts.float()).relu()


def scorecam_weights(inp: CamInputs) -> Tensor:
    """Score-CAM: ``w_c = softmax_c(y_t(X * M_c))``, ``L = ReLU(sum_c w_c A_c)``.

    ``M_c`` is channel ``c`` of the activation, upsampled and min-max scaled (``channel_masks``);
    the softmax over channels follows pytorch-grad-cam and torchcam (torchcam subtracts the
    unmasked score first, which softmax ignores). Cost: one forward per (image, channel), in
    chunks of ``inp.max_batch`` masked images, so memory stays at one chunk whatever C is.
    Channels whose mask is all zero (constant activation) share one forward of a black image,
    and all ``k`` targets of an image are read from the same masked forwards.

    Returns:
        weights ``[B, k, C]``.
    """
    acts, images, targets = inp.acts, inp.images, inp.targets
    b, c = acts.shape[:2]
    size = (images.shape[-2], images.shape[-1])
    constant = acts.flatten(2).amax(2) == acts.flatten(2).amin(2)  # [B, C]
    scores = torch.empty(b, c, targets.shape[1], device=acts.device)
    # Feeding masked images channels-last is ~1.5-3x faster on CPU (oneDNN) and exact.
    fmt = torch.channels_last if images.dim() == 4 else torch.contiguous_format
    todo = (~constant).nonzero()  # [(image, channel)]
    for start in range(0, todo.shape[0], inp.max_batch):
        pairs = todo[start : start + inp.max_batch]
        img, ch = pairs[:, 0], pairs[:, 1]
        masks = channel_masks(acts[img, ch][:, None], size)  # [n, 1, H, W]
        masked = (images[img] * masks.to(images.dtype)).contiguous(memory_format=fmt)
        logits = inp.run_model(masked).float()
        scores[img, ch] = logits.gather(1, targets[img])
    if constant.any():
        black = inp.run_model(torch.zeros_like(images[:1])).float()[0]  # [K]
        img, ch = constant.nonzero(as_tuple=True)
        scores[img, ch] = black[targets[img]]
    return scores.softmax(1).transpose(1, 2)  # over channels, [B, k, C]


def _unit_channels(acts: Tensor) -> Tensor:
    """Each channel min-max scaled to [0, 1] at feature resolution (constant -> 0), as torchcam's
    SS-CAM / IS-CAM do before upsampling (Score-CAM scales after upsampling)."""
    lo = acts.amin((2, 3), keepdim=True)
    span = acts.amax((2, 3), keepdim=True) - lo
    return torch.where(span > 0, (acts - lo) / torch.where(span > 0, span, 1), 0)


def _upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def sscam_weights(inp: CamInputs) -> Tensor:
    """SS-CAM (Wang et al., 2020, arXiv:2006.14255) as torchcam's ``SSCAM`` computes it.

    ``w_c = softmax_c(mean_i y_t(X * (U(N(A_c)) + d_i)))`` with ``N`` the per-channel min-max
    at feature resolution, ``U`` bilinear upsampling to the image and ``d_i ~ N(0, std^2)`` noise
    per pixel, channel and sample (``inp.num_samples`` samples of ``inp.noise_std``; torchcam's
    defaults 35 and 2.0). ``L = ReLU(sum_c w_c A_c)``.

    The noise comes from the default generator of the images' device, drawn per sample in
    (image, channel, pixel) order as torchcam draws its ``[B, C, H, W]`` tensor, chunk by chunk
    (``max_batch`` masks at a time; memory stays at one chunk). On the CPU that is torchcam's
    stream exactly when ``H * W`` is a multiple of 16 (the sampler fills blocks of 16); torchcam
    samples on the CPU and copies to the GPU, so on a GPU the draws differ. Cost: ``num_samples``
    forwards per (image, channel).

    Returns:
        weights ``[B, k, C]``.
    """
    acts, images, targets = inp.acts, inp.images, inp.targets
    b, c = acts.shape[:2]
    size = (images.shape[-2], images.shape[-1])
    unit = _unit_channels(acts.float())
    scores = torch.zeros(b * c, targets.shape[1], device=acts.device)
    fmt = torch.channels_last if images.dim() == 4 else torch.contiguous_format
    img_of = torch.arange(b, device=acts.device).repeat_interleave(c)
    ch_of = torch.arange(c, device=acts.device).repeat(b)
    for _ in range(inp.num_samples):
        for start in range(0, b * c, inp.max_batch):
            img, ch = img_of[start : start + inp.max_batch], ch_of[start : start + inp.max_batch]
            masks = _upsample(unit[img, ch][:, None], size)  # [n, 1, H, W]
            noise = torch.randn(masks.shape, device=masks.device) * inp.noise_std
            masked = ((masks + noise).to(images.dtype) * images[img]).contiguous(memory_format=fmt)
            logits = inp.run_model(masked).float()
            scores[start : start + img.shape[0]] += logits.gather(1, targets[img])
    mean = (scores / inp.num_samples).reshape(b, c, -1)
    return mean.softmax(1).transpose(1, 2)


def iscam_weights(inp: CamInputs) -> Tensor:
    """IS-CAM (Naidu et al., 2020, arXiv:2010.03023) as torchcam's ``ISCAM`` computes it.

    ``w_c = softmax_c(mean_i y_t(s_i X * U(N(A_c))))`` with ``s_i = sum_{j<=i} j / n`` for
    ``i = 1..n`` (``inp.num_samples``, torchcam's default 10; torchcam accumulates these
    coefficients, so they grow to ``(n + 1) / 2``), ``N`` and ``U`` as in SS-CAM.
    ``L = ReLU(sum_c w_c A_c)``. Deterministic. Cost: ``n`` forwards per (image, channel);
    channels with a constant activation give a black image at every step and share one forward.

    Returns:
        weights ``[B, k, C]``.
    """
    acts, images, targets = inp.acts, inp.images, inp.targets
    b, c = acts.shape[:2]
    size = (images.shape[-2], images.shape[-1])
    unit = _unit_channels(acts.float())
    constant = acts.flatten(2).amax(2) == acts.flatten(2).amin(2)  # [B, C]
    scores = torch.zeros(b, c, targets.shape[1], device=acts.device)
    fmt = torch.channels_last if images.dim() == 4 else torch.contiguous_format
    todo = (~constant).nonzero()
    coeffs, total = [], 0.0
    for i in range(inp.num_samples):
        total += (i + 1) / inp.num_samples  # a Python float, as torchcam multiplies by
        coeffs.append(total)
    for start in range(0, todo.shape[0], inp.max_batch):
        img, ch = todo[start : start + inp.max_batch].unbind(1)
        masked = _upsample(unit[img, ch][:, None], size).to(images.dtype) * images[img]
        for coeff in coeffs:
            logits = inp.run_model((coeff * masked).contiguous(memory_format=fmt)).float()
            scores[img, ch] += logits.gather(1, targets[img])
    if constant.any():
        black = inp.run_model(torch.zeros_like(images[:1])).float()[0]  # [K], any coefficient
        img, ch = constant.nonzero(as_tuple=True)
        scores[img, ch] = black[targets[img]] * inp.num_samples
    return (scores / inp.num_samples).softmax(1).transpose(1, 2)
