"""The training tasks: what differs between pretraining and segmentation finetuning.

A task builds its model, computes the training loss of a batch and validates; the loop and the
step (``nationmap.train.step``) are the same for all. :func:`make_task` picks the task once from
``cfg.task``:

* :class:`PretrainTask`: MixMAE or SimMIM, the model's own reconstruction loss; validated by the
  mean reconstruction loss (``val_loss``) under fixed masks.
* :class:`SegmentationTask`: UPerNet, with :data:`LABELS` saying how its logits are read: LULC
  (9 classes, focal + dice, ``val_miou`` / ``val_macc``) or water (one logit, BCE + dice,
  ``val_water_iou`` / ``val_precision`` / ``val_recall``).

Batches are the dicts of ``nationmap.train.data`` as torch tensors: ``x`` (N, 1, P, P) float32,
``db`` (N, 1, P, P) float32 (NaN = no data), ``valid`` (N, 1, P, P) bool, ``target`` (N, P, P)
uint8 when finetuning (255 = ignore).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from nationmap.losses import BCEDiceLoss, BinaryDiceConfig, FocalDiceConfig, FocalDiceLoss, class_weights, water_mask
from nationmap.metrics import ConfusionMatrix
from nationmap.models import get_preset, MixMAE, MixMAEConfig, SegmentationConfig, SegmentationModel, SimMIM, SimMIMConfig
from nationmap.train.checkpoint import load_encoder_weights
from nationmap.train.config import TrainConfig
from nationmap.train.data import SCHEMES
from nationmap.train.step import all_sum, autocast

# The validation metric that picks a run's best epoch, and whether lower or higher is better.
MONITOR = {"pretrain": ("val_loss", "min"), "lulc": ("val_miou", "max"), "water": ("val_water_iou", "max")}
VAL_MASK_SEED = 1234  # pretraining validates under the same masks every epoch


class _LossMean:
    """The sample-weighted mean of batch losses over every worker's validation batches."""

    def __init__(self):
        self.totals = torch.zeros(2, dtype=torch.float64)  # loss sum, samples

    def add(self, loss: torch.Tensor, n: int) -> None:
        self.totals += torch.tensor([float(loss) * n, n], dtype=torch.float64)

    def mean(self, device: torch.device) -> float:
        totals = all_sum(self.totals.to(device)).cpu()  # a collective: every worker calls it
        return float(totals[0] / max(totals[1], 1))


class TrainTask(ABC):
    """One kind of training run (see the module docstring)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.name = cfg.task
        self.monitor: tuple[str, str] = MONITOR[cfg.task]  # (metric, "min" | "max")

    @property
    def precision(self) -> str:
        """Of the forward and loss (``nationmap.train.step.autocast``): the config's."""
        return self.cfg.precision

    @abstractmethod
    def build_model(self, img_size: int) -> nn.Module:
        """The model to train on ``img_size`` px patches (random weights, seeded by the caller)."""

    def load_init(self, model: nn.Module) -> None:
        """Load the starting weights the config names (none by default)."""

    def to(self, device: torch.device) -> TrainTask:
        """Move what the loss holds (class weights) to ``device``."""
        return self

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The scalar training loss of ``batch`` through ``model`` (the DDP wrapper when there is one)."""

    @abstractmethod
    def validate(self, model: nn.Module, batches: Iterable[dict], device: torch.device) -> dict:
        """Validation metrics merged over every worker (``val_loss`` first); ``model`` is the bare
        model in eval mode. Runs collectives: every worker calls it once per epoch."""

    def checkpoint_meta(self) -> dict:
        """What a checkpoint and its bundle record about the task (read by inference)."""
        return {"task": self.name, "scheme": SCHEMES.get(self.name), "threshold": None}


class PretrainTask(TrainTask):
    """Self-supervised pretraining (MixMAE or SimMIM, with or without the SAR weight)."""

    def build_model(self, img_size: int) -> nn.Module:
        return pretrain_model(self.cfg, img_size)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(batch["x"], batch["db"], batch["valid"]).loss

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: Iterable[dict], device: torch.device) -> dict:
        mean = _LossMean()
        generator = torch.Generator().manual_seed(VAL_MASK_SEED)
        mixes = isinstance(model, MixMAE)
        for batch in batches:
            n = batch["x"].shape[0]
            if mixes and n < 2:
                continue  # MixMAE mixes pairs: a last batch of one image has no partner
            with autocast(device, self.precision):
                mask = _val_mask(model, n, generator, device)
                loss = model(batch["x"], batch["db"], batch["valid"], mask=mask).loss
            mean.add(loss, n)
        return {"val_loss": mean.mean(device)}


def _val_mask(model: nn.Module, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """MixMAE: one (gh, gw) mask for the batch; SimMIM: (n, gh, gw), one per image."""
    if isinstance(model, MixMAE):
        return model.random_mask(generator, device=device)
    return model.random_mask(n, generator, device=device)


@dataclass(frozen=True)
class Labels:
    """How a segmentation task reads its logits."""

    classes: int  # of the confusion matrix
    predict: Callable[[torch.Tensor], torch.Tensor]  # logits (N, C, H, W) -> class indices (N, H, W)
    scores: Callable[[ConfusionMatrix], dict]  # merged confusion matrix -> metrics
    threshold: float | None = None  # water probability threshold recorded with the model


def _lulc_scores(cm: ConfusionMatrix) -> dict:
    s = cm.scores()
    return {"val_miou": s.miou, "val_macc": s.macc}


def _water_scores(cm: ConfusionMatrix) -> dict:
    s = cm.binary_scores()
    return {"val_water_iou": s.iou, "val_precision": s.precision, "val_recall": s.recall}


LABELS = {
    "lulc": Labels(9, lambda logits: logits.argmax(1), _lulc_scores),
    "water": Labels(2, water_mask, _water_scores, threshold=0.5),
}


class SegmentationTask(TrainTask):
    """LULC or water finetuning of UPerNet on a (pretrained) Swin encoder."""

    def __init__(self, cfg: TrainConfig, loss_fn: nn.Module, labels: Labels):
        super().__init__(cfg)
        self.loss_fn, self.labels = loss_fn, labels

    def build_model(self, img_size: int) -> nn.Module:
        return segmentation_model(self.cfg, img_size)

    def load_init(self, model: nn.Module) -> None:
        if self.cfg.init:
            model.encoder.load_encoder_state(load_encoder_weights(self.cfg.init))

    def to(self, device: torch.device) -> SegmentationTask:
        self.loss_fn.to(device)
        return self

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return self.loss_fn(model(batch["x"]), batch["target"].long())

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: Iterable[dict], device: torch.device) -> dict:
        k = self.labels.classes
        mean, cm = _LossMean(), ConfusionMatrix(k)
        for batch in batches:
            with autocast(device, self.precision):
                logits = model(batch["x"])
                target = batch["target"].long()
                loss = self.loss_fn(logits, target)
                cm.update(self.labels.predict(logits).cpu(), target.cpu())
            mean.add(loss, batch["x"].shape[0])
        out = {"val_loss": mean.mean(device)}
        counts = all_sum(torch.as_tensor(cm.counts, device=device)).cpu().numpy()
        return {**out, **self.labels.scores(ConfusionMatrix(k, counts=counts))}

    def checkpoint_meta(self) -> dict:
        return {**super().checkpoint_meta(), "threshold": self.labels.threshold}


def _encoder(cfg: TrainConfig, img_size: int):
    return get_preset(cfg.preset).encoder.replace(drop_path_rate=cfg.drop_path, img_size=img_size)


def pretrain_model(cfg: TrainConfig, img_size: int) -> nn.Module:
    """MixMAE or SimMIM (``cfg.method``) on the preset's encoder for ``img_size`` px inputs."""
    extra = {"mask_ratio": cfg.mask_ratio} if cfg.mask_ratio else {}
    config_cls, model_cls = (MixMAEConfig, MixMAE) if cfg.method == "mixmae" else (SimMIMConfig, SimMIM)
    if cfg.method == "simmim":
        extra["mask_patch"] = min(32, img_size // 2)
    pc = config_cls.from_preset(cfg.preset, sar_weight=cfg.sar_weight, **extra)
    return model_cls(dataclasses.replace(pc, encoder=_encoder(cfg, img_size)))


def segmentation_model(cfg: TrainConfig, img_size: int) -> nn.Module:
    """UPerNet for ``cfg.task`` (lulc or water) with the Table I switches (high-res, refine-up,
    image guide)."""
    seg = SegmentationConfig.from_preset(cfg.preset, cfg.task, highres=cfg.highres, refine_up=cfg.refine_up,
                                         guide=cfg.guide)
    return SegmentationModel(seg.replace(encoder=_encoder(cfg, img_size)))


def lulc_loss(cfg: TrainConfig, dataset_meta: dict) -> nn.Module:
    """Alpha-scaled focal + dice, class weights from the training split's LULC pixel counts."""
    freq = dataset_meta["class_frequencies"]["train"]["lulc9"]["pixels"]
    return FocalDiceLoss(class_weights(freq), FocalDiceConfig(
        alpha_scale=cfg.alpha_scale, gamma=cfg.gamma, lambda_focal=cfg.lambda_focal, lambda_dice=cfg.lambda_dice))


def water_loss(cfg: TrainConfig, dataset_meta: dict) -> nn.Module:
    return BCEDiceLoss(BinaryDiceConfig(lambda_dice=cfg.lambda_dice))


LOSSES = {"lulc": lulc_loss, "water": water_loss}


def make_task(cfg: TrainConfig, dataset_meta: dict) -> TrainTask:
    """The task object of ``cfg.task``; ``dataset_meta``: the prepared dataset's ``class_frequencies``
    (for the LULC class weights)."""
    if cfg.task == "pretrain":
        return PretrainTask(cfg)
    return SegmentationTask(cfg, LOSSES[cfg.task](cfg, dataset_meta), LABELS[cfg.task])


def build_task_model(cfg: TrainConfig, img_size: int = 256) -> nn.Module:
    """The model a run of ``cfg`` trains, random weights (for benchmarks and tools)."""
    return (pretrain_model if cfg.task == "pretrain" else segmentation_model)(cfg, img_size)


def build_loss(cfg: TrainConfig, dataset_meta: dict) -> nn.Module | None:
    """The segmentation loss of ``cfg.task``; None for pretraining (the model computes its own)."""
    return LOSSES[cfg.task](cfg, dataset_meta) if cfg.task in LOSSES else None
