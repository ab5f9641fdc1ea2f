"""The LightningModule: a GAP classifier trained with cross-entropy."""

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from camlab.checkpoint_io import read_checkpoint
from camlab.errors import CamlabError
from camlab.evalmode import eval_mode
from camlab.methods import build_method
from camlab.methods.reference import reference_param_groups
from camlab.models.backbones import check_input_size
from camlab.models.hparams import check_model_args, checkpoint_hparams
from camlab.models.network import build_network


class PercentAccuracy(MulticlassAccuracy):
    """Top-1 accuracy in percent: the unit of every localization metric (WSOL papers report
    both in percent), so ``val/acc`` and ``val/top1_loc`` read on one scale."""

    def compute(self) -> Tensor:
        return super().compute() * 100.0


class GAPClassifier(pl.LightningModule):
    """Fine-tunes a GAP classifier; the network is built here from the backbone *name*, so
    ``GAPClassifier.load_from_checkpoint(path)`` needs nothing else.

    Args:
        backbone: torchvision backbone name (see ``camlab.models.BACKBONES``), or with
            ``arch=timm`` any ``timm.list_models()`` name.
        num_classes: classes (from the data module).
        in_channels: image channels (from the data module).
        pretrained: start the backbone from torchvision's ImageNet weights (timm's pretrained
            weights with ``arch=timm``).
        hires_cam: ResNets: last stage at stride 1 (twice the CAM resolution).
        optimizer: ``functools.partial`` of a torch optimizer taking the parameter groups.
        scheduler: ``functools.partial`` of a torch LR scheduler taking the optimizer, or None.
        backbone_lr_mult: learning-rate factor of a pretrained backbone relative to the new
            layers (WSOL practice: the new head learns 10x faster).
        label_smoothing: cross-entropy label smoothing.
        mean, std, class_names, image_size: the data's, kept so a checkpoint can be used alone.
        init_from_checkpoint: the weights will come from a checkpoint (set in every saved one,
            and by ``train.py`` when resuming): build without fetching ImageNet weights, while
            ``pretrained`` keeps meaning "an ImageNet backbone" (its ``backbone_lr_mult``).
        method: WSOL training method (``camlab.methods.WSOL_METHODS``; ``cam`` = plain training).
            It changes training steps only: validation, test and CAMs use the plain network.
        method_params: the method's hyper-parameters (plain values, configs/method/<name>).
        head_layers: backbone layers (names under ``net.features.backbone``) that learn at the
            head's rate, not ``backbone_lr_mult`` times it: the reference trains ResNet50's
            ``layer4`` with its new classifier.
        data_config: the data module's registry name and settings (``camlab.data.registry``),
            so evaluation rebuilds the data the model was trained on from the checkpoint alone.
        arch: ``torchvision`` (torchvision's network cut for GAP, ``camlab.models.backbones``)
            or ``reference`` (vgg16, resnet50, inception_v3 as wsolevaluation builds them for
            ``method``, with its learning-rate groups: ``camlab.models.reference``) or ``timm``
            (a timm model's ``forward_features`` + GAP + linear: ``camlab.models.timm_backbones``).
        large_feature_map: ``arch=reference``: 28x28 CAMs at 224 px instead of 14x14.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int = 10,
        in_channels: int = 3,
        pretrained: bool = False,
        hires_cam: bool = False,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        backbone_lr_mult: float = 0.1,
        label_smoothing: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        image_size: int | None = None,
        init_from_checkpoint: bool = False,
        method: str = "cam",
        method_params: dict[str, Any] | None = None,
        head_layers: Sequence[str] = (),
        data_config: dict[str, Any] | None = None,
        arch: str = "torchvision",
        large_feature_map: bool = False,
    ) -> None:
        super().__init__()
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        check_model_args(args)
        if arch != "timm":  # timm models are checked on a blank image when built
            check_input_size(backbone, image_size)
        # Plain values only: optimizer/scheduler partials stay out of the checkpoint.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        fetch = pretrained and not init_from_checkpoint
        self.net = build_network(
            arch, backbone, num_classes, in_channels, fetch, hires_cam, large_feature_map,
            image_size, method,
        )  # fmt: skip
        # Methods place layers by torchvision backbone name: a timm name must not match one.
        where = f"timm:{backbone}" if arch == "timm" else backbone
        # Rebuilt from plain values when a checkpoint is loaded (its layers are in the state dict).
        self.wsol_method = build_method(method, self.net, where, num_classes,
                                        **(method_params or {}))  # fmt: skip
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # One metric object per stage: their states must not mix.
        self.train_acc = PercentAccuracy(num_classes, average="micro")
        self.val_acc = PercentAccuracy(num_classes, average="micro")
        self.test_acc = PercentAccuracy(num_classes, average="micro")
        # Sum and count synced across ranks: exact under DDP even when ranks hold unequal shares.
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    @staticmethod
    def logged_names() -> list[str]:
        """The metric names ``self.log`` writes (what a checkpoint may monitor)."""
        names = ["train/loss", "train/loss_step", "train/loss_epoch", "train/acc"]
        return names + [f"{stage}/{m}" for stage in ("val", "test") for m in ("loss", "acc")]

    # The CAM interface of GAPNet, reachable from the LightningModule too.
    cam_layer = "net.features"

    @property
    def gap_classifier(self) -> torch.nn.Linear:
        return self.net.classifier

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``."""
        return self.net(x)

    def evaluation_cam(self, images: Tensor, labels: Tensor) -> Tensor | None:
        """The WSOL method's own CAM of ``labels`` ``[B, h, w]`` (the reference's ACoL: the
        maximum of both branches' min-max normalised maps), or None where the plain network's
        CAM is the method's (every other case)."""
        if not self.wsol_method.has_evaluation_cam:
            return None
        with eval_mode(self), torch.no_grad():
            return self.wsol_method.evaluation_forward(self.net, images, labels)[2]

    def _criterion(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)

    def _step(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        if stage == "train":  # the WSOL method's forward and loss (plain CE for `cam`)
            loss, logits, feats = self.wsol_method.training_loss(
                self.net, batch["image"], batch["label"], self._criterion
            )
        else:
            logits, feats, cams = self.wsol_method.evaluation_forward(
                self.net, batch["image"], batch["label"]
            )
            loss = self._criterion(logits, batch["label"])
        acc = getattr(self, f"{stage}_acc")
        acc(logits, batch["label"])
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                     batch_size=len(logits))  # fmt: skip
        else:
            mean_loss = getattr(self, f"{stage}_loss")
            mean_loss.update(loss.detach(), weight=len(logits))
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        # Callbacks reuse the logits and CAM-layer features (no second forward pass), and the
        # method's own evaluation CAM where it has one (the reference's ACoL).
        out = {"loss": loss, "logits": logits.detach(), "features": feats.detach()}
        if stage != "train" and cams is not None:
            out["cams"] = cams.detach()
        return out

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "test")

    def _share_rank0_buffers(self) -> None:
        # DDP broadcasts buffers before training forwards only: after the last step each rank
        # holds the BatchNorm statistics of its own batches. Evaluate rank 0's network (the one
        # it checkpoints) everywhere, so N processes score exactly what one process would.
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for buffer in self.buffers():
                dist.broadcast(buffer, src=0)

    def on_validation_epoch_start(self) -> None:
        self._share_rank0_buffers()

    def on_test_epoch_start(self) -> None:
        self._share_rank0_buffers()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("GAPClassifier was built without an optimizer; pass `optimizer=`.")
        if self.hparams.get("arch") == "reference":
            # The reference's groups: its new layers (ResNet50: layer4 and fc) at the optimizer's
            # lr, the rest at lr * backbone_lr_mult (its lr_classifier_ratio 10 = mult 0.1).
            base_lr = self.optimizer_factory.keywords["lr"]
            ratio = 1.0 / self.hparams.backbone_lr_mult
            groups = reference_param_groups(self.net, self.wsol_method, base_lr / ratio, ratio)
            return self._with_scheduler(self.optimizer_factory(params=groups))
        fast = tuple(f"{name}." for name in self.hparams.get("head_layers") or ())
        backbone = [p for n, p in self.net.features.backbone.named_parameters()
                    if not n.startswith(fast)]  # fmt: skip
        ids = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in ids]
        groups = [{"params": head, "name": "head"}, {"params": backbone, "name": "backbone"}]
        if self.hparams.pretrained:
            base_lr = self.optimizer_factory.keywords["lr"]
            groups[1]["lr"] = base_lr * self.hparams.backbone_lr_mult
        return self._with_scheduler(self.optimizer_factory(params=groups))

    def _with_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The trained weights are in the state dict: loading must not fetch ImageNet weights again.
        checkpoint["hyper_parameters"]["init_from_checkpoint"] = True

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str, map_location: Any = None, strict: bool = True, **kwargs: Any
    ) -> "GAPClassifier":
        """Rebuilds the model a checkpoint describes, never running code from the file.

        The file is read with ``weights_only=True`` (``camlab.checkpoint_io.read_checkpoint``);
        its hyper-parameters must be this class's plain-valued arguments (Lightning's own loader
        would also import and call an ``_instantiator`` named in them); the weights must fit the
        network they describe. Any of these failing raises ``CamlabError``.

        Args:
            checkpoint_path: a ``.ckpt`` written by ``train.py``.
            map_location: device for the model (default: CPU).
            strict: every weight of the network must be in the checkpoint and vice versa.
            **kwargs: constructor arguments that replace the saved ones (e.g. ``optimizer``).
        """
        path = str(checkpoint_path)
        return cls.from_checkpoint(read_checkpoint(path), path, map_location, strict, **kwargs)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any], path: str, map_location: Any = None, strict: bool = True,
        **kwargs: Any,
    ) -> "GAPClassifier":  # fmt: skip
        """``load_from_checkpoint`` for a checkpoint already read with ``read_checkpoint``
        (``path`` names it in errors), so a caller that needs its contents reads the file once."""
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        hparams = checkpoint_hparams(checkpoint["hyper_parameters"], path, known)
        hparams["init_from_checkpoint"] = True  # the weights are in the file: fetch none
        try:
            model = cls(**{**hparams, **kwargs})
        except CamlabError as err:
            message = f"The checkpoint {path} describes a model camlab cannot build: {err}"
            raise CamlabError(message) from None
        except TypeError as err:  # e.g. a required argument missing from an old checkpoint
            raise CamlabError(f"The checkpoint {path} lacks model arguments ({err}).") from None
        check_state_dict(model, checkpoint["state_dict"], path, strict)
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
        if map_location is not None and not callable(map_location):
            model.to(map_location if not isinstance(map_location, dict) else "cpu")
        return model


def timm_classifier(
    name: str, backbone: str | None = None, arch: str = "timm", **kwargs: Any
) -> GAPClassifier:
    """``model=timm``'s target: a ``GAPClassifier`` of the timm model ``name``.

    Args:
        name: any ``timm.list_models()`` name (``model.name``).
        backbone, arch: the config's copies (``${.name}``, ``timm``) that logs and result tables
            read; another value is a conflicting override.
        **kwargs: the other ``GAPClassifier`` arguments.
    """
    if backbone not in (None, name) or arch != "timm":
        raise CamlabError(
            f"model=timm builds the timm model model.name={name!r}, but the config also says "
            f"backbone={backbone!r}, arch={arch!r}. Choose the model with model.name=<name> "
            "only, or use a torchvision config (e.g. model=resnet18)."
        )
    return GAPClassifier(backbone=name, arch="timm", **kwargs)


def check_state_dict(
    model: torch.nn.Module, state_dict: Any, path: str, strict: bool = True
) -> None:
    """Raises CamlabError when ``state_dict`` does not fit ``model`` (missing, unexpected or
    differently shaped weights), naming the backbone instead of listing every key."""
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CamlabError(
            f"{path} has a state_dict that is not a mapping of names to tensors: not a checkpoint "
            "written by camlab's train.py."
        )
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if reshaped or (strict and (missing or unexpected)):
        hp = getattr(model, "hparams", {})
        what = f"{hp.get('backbone')} for {hp.get('num_classes')} classes" if hp else "this model"
        parts = [f"{len(missing)} weights missing" if missing else "",
                 f"{len(unexpected)} unknown" if unexpected else "",
                 f"{len(reshaped)} of another shape (e.g. {reshaped[0]}: "
                 f"{tuple(state_dict[reshaped[0]].shape)} vs {tuple(own[reshaped[0]].shape)})"
                 if reshaped else ""]  # fmt: skip
        first = (missing or unexpected or [""])[0]
        raise CamlabError(
            f"The weights in {path} do not fit a {what} ({', '.join(p for p in parts if p)}"
            f"{f'; first: {first}' if first else ''}): it was saved from another network. Use "
            "the model settings it was trained with (its backbone, method and data), or start a "
            "new run without ckpt_path."
        )
