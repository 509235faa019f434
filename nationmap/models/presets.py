"""Model presets: the paper's Swin-B and smaller siblings, built from one config class.

A preset names an encoder (Swin stage widths, depths, heads) plus the widths of the heads that
sit on it (UPerNet decoder channels, MixMAE decoder). ``swin-b`` is the configuration of
``enhanced-lulc-alos2.md`` and ``sar-w-mixmae.md``; ``swin-s`` and ``swin-t`` are the standard
Swin-S/T; ``tiny`` exists for tests and CPU demos.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nationmap.config import Config, from_dict
from nationmap.errors import InputError


@dataclass(frozen=True)
class EncoderConfig(Config):
    """A Swin Transformer encoder for single-channel SAR patches.

    embed_dim: channels C of stage 1 (stage i has C * 2**i).
    depths / num_heads: blocks and attention heads per stage.
    window_size: attention window in tokens (clamped by timm when a stage is smaller).
    patch_size: pixels per token edge at stage 1 (stride of the post-embedding map).
    in_chans: input channels (1: HH).
    img_size: input height and width in pixels.
    """

    WHAT = "encoder setting"

    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    patch_size: int = 4
    in_chans: int = 1
    img_size: int = 256
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1

    def __post_init__(self):
        self.check_fields()  # lists from JSON become tuples; wrong types and nan are refused
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise InputError("encoder depths and num_heads must have the same, non-zero length")
        if min(self.depths) < 1 or min(self.num_heads) < 1 or self.embed_dim < 1:
            raise InputError("encoder depths, heads and embed_dim must be positive")
        for i, heads in enumerate(self.num_heads):
            if self.stage_channels[i] % heads:
                raise InputError(f"stage {i + 1} width {self.stage_channels[i]} is not divisible by {heads} heads")
        if self.in_chans < 1 or self.window_size < 1 or self.patch_size < 1:
            raise InputError("in_chans, window_size and patch_size must be positive")
        if self.img_size % self.max_stride:
            raise InputError(f"img_size {self.img_size} must be a multiple of the encoder stride {self.max_stride}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise InputError("drop_path_rate must be in [0, 1)")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @property
    def stage_strides(self) -> tuple[int, ...]:
        return tuple(self.patch_size * 2**i for i in range(len(self.depths)))

    @property
    def max_stride(self) -> int:
        return self.stage_strides[-1]

    def replace(self, **changes) -> "EncoderConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_to_dict(cfg) -> dict:
    """JSON-ready dict of a model config dataclass that holds an ``encoder: EncoderConfig``."""
    d = dataclasses.asdict(cfg)
    d["encoder"] = cfg.encoder.to_dict()
    return d


def config_from_dict(cls, d: dict):
    """Inverse of ``config_to_dict`` for ``cls`` by the one rule of :mod:`nationmap.config`: keys
    ``cls`` does not know and values of the wrong type are refused (a bundle written by another
    version or edited by hand is a clear refusal, not a silently different model)."""
    return from_dict(cls, d, f"{cls.__name__} setting")


@dataclass(frozen=True)
class Preset:
    """An encoder plus the head widths used with it."""

    name: str
    encoder: EncoderConfig
    decoder_channels: int  # UPerNet PPM/FPN width
    mae_decoder_dim: int  # MixMAE transformer decoder width
    mae_decoder_depth: int
    mae_decoder_heads: int
    description: str = ""


# Decoder widths for swin-b are the authors' (UPerNet 512; MixMAE decoder 512-d, 8 layers, 16 heads).
PRESETS: dict[str, Preset] = {
    "swin-b": Preset(
        "swin-b", EncoderConfig(128, (2, 2, 18, 2), (4, 8, 16, 32)), 512, 512, 8, 16,
        "Swin-B, the paper's encoder (C=128, depths 2/2/18/2, heads 4/8/16/32)",
    ),
    "swin-s": Preset(
        "swin-s", EncoderConfig(96, (2, 2, 18, 2), (3, 6, 12, 24)), 512, 512, 8, 16,
        "Swin-S (C=96, depths 2/2/18/2)",
    ),
    "swin-t": Preset(
        "swin-t", EncoderConfig(96, (2, 2, 6, 2), (3, 6, 12, 24)), 512, 512, 8, 16,
        "Swin-T (C=96, depths 2/2/6/2)",
    ),
    "tiny": Preset(
        "tiny", EncoderConfig(24, (2, 2, 2, 2), (1, 2, 4, 8), drop_path_rate=0.0), 48, 64, 2, 4,
        "tests and CPU demos (C=24, depths 2/2/2/2)",
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})") from None
