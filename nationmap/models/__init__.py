"""Models: the Swin encoder, UPerNet segmentation, and the MixMAE / SimMIM pretraining models."""

from nationmap.models.presets import PRESETS, EncoderConfig, Preset, get_preset
from nationmap.models.pretrain import MixMAE, MixMAEConfig, PretrainOutput, SimMIM, SimMIMConfig
from nationmap.models.swin import SwinEncoder, encoder_state
from nationmap.models.upernet import TASK_CLASSES, SegmentationConfig, SegmentationModel

__all__ = [
    "PRESETS",
    "TASK_CLASSES",
    "EncoderConfig",
    "MixMAE",
    "MixMAEConfig",
    "Preset",
    "PretrainOutput",
    "SegmentationConfig",
    "SegmentationModel",
    "SimMIM",
    "SimMIMConfig",
    "SwinEncoder",
    "encoder_state",
    "get_preset",
]
