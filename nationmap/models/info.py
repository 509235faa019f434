"""Sizes and forward cost of the models, per preset and head (``nationmap models info``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes
only, nothing is computed): one multiply-add = 2 FLOPs; matmuls, convolutions and attention
are counted, element-wise ops (norms, activations, softmax) are not. Per patch = per 256 x 256
(``img_size``) single-channel input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nationmap.models.pretrain import MixMAE, MixMAEConfig, SimMIM, SimMIMConfig
from nationmap.models.presets import get_preset
from nationmap.models.swin import SwinEncoder
from nationmap.models.upernet import SegmentationConfig, SegmentationModel

# name -> (description, builder(preset) -> model)
HEADS: dict[str, tuple[str, Callable[[str], nn.Module]]] = {
    "encoder": ("Swin encoder alone", lambda p: SwinEncoder(get_preset(p).encoder)),
    "lulc": ("UPerNet + high-res + refine-up, 9 classes", lambda p: SegmentationModel(SegmentationConfig.from_preset(p, "lulc"))),
    "lulc-baseline": (
        "UPerNet baseline (no high-res, x4 interpolation), 9 classes",
        lambda p: SegmentationModel(SegmentationConfig.from_preset(p, "lulc", highres=False, refine_up=False)),
    ),
    "water": ("UPerNet + high-res + refine-up, 1 logit", lambda p: SegmentationModel(SegmentationConfig.from_preset(p, "water"))),
    # The SAR weight adds no parameters and only element-wise work (not counted), so the cost is
    # measured without it (it needs the raw dB input).
    "mixmae": (
        "SAR-W-MixMAE pretraining (encoder + decoder, 2 decoder passes)",
        lambda p: MixMAE(MixMAEConfig.from_preset(p, sar_weight=False)),
    ),
    "simmim": (
        "SAR-W-SimMIM pretraining (encoder + linear decoder)",
        lambda p: SimMIM(SimMIMConfig.from_preset(p, sar_weight=False)),
    ),
}


# Peak dense bf16 tensor FLOP/s (vendor data sheets, without sparsity), matched in this order on
# the device name (H100 PCIe before H100).
PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12), ("GH200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100 NVL", 835.0e12), ("H100", 989.4e12),
    ("B200", 2250e12), ("A100", 312.0e12), ("L40S", 362.1e12), ("L4", 121.0e12), ("A10G", 70.0e12), ("A10", 125.0e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU from its name (``torch.cuda.get_device_name``), or None."""
    for key, value in PEAK_BF16:
        if key.lower() in device_name.lower():
            return value
    return None


@dataclass(frozen=True)
class ModelCost:
    preset: str
    head: str
    description: str
    parameters: int
    flops_per_patch: float  # forward FLOPs (2 per multiply-add) for one img_size x img_size patch
    img_size: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, batch: torch.Tensor) -> int:
    """Total forward FLOPs of ``model(batch)`` (any device, meta included)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(batch)
    return int(counter.get_total_flops())


def model_cost(preset: str, head: str, device: str = "meta") -> ModelCost:
    """Parameters and per-patch forward FLOPs of one preset and head."""
    description, build = HEADS[head]
    cfg = get_preset(preset).encoder
    with torch.device(device):
        model = build(preset).eval()
    batch = 2  # MixMAE mixes pairs; the cost is divided per patch
    x = torch.zeros(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=device)
    flops = forward_flops(model, x) / batch
    return ModelCost(preset, head, description, count_parameters(model), flops, cfg.img_size)

