"""Training objectives: segmentation (focal + dice, BCE + dice) and masked reconstruction."""

from nationmap.losses.reconstruction import masked_l1, normalise_patches, patchify, sar_weight, unpatchify, weighted_mse
from nationmap.losses.segmentation import (
    IGNORE_INDEX,
    BCEDiceLoss,
    BinaryDiceConfig,
    FocalDiceConfig,
    FocalDiceLoss,
    class_weights,
    water_mask,
)

__all__ = [
    "IGNORE_INDEX",
    "BCEDiceLoss",
    "BinaryDiceConfig",
    "FocalDiceConfig",
    "FocalDiceLoss",
    "class_weights",
    "masked_l1",
    "normalise_patches",
    "patchify",
    "sar_weight",
    "unpatchify",
    "water_mask",
    "weighted_mse",
]
