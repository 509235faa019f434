"""Swin Transformer encoder for single-channel SAR patches (timm's implementation, configured).

The encoder is timm's ``SwinTransformer``; this module only configures it (one input channel,
window 8, 256 x 256 by default), exposes the post-patch-embedding map next to the four stage
maps, and adds MixMAE's image-restricted attention by handing timm's window attention an extra
additive mask. Nothing of Swin itself is re-implemented.

Feature maps (``feature_info``) for an input of shape (B, 1, H, W), Swin-B:

=======  ========  =========  ===========================
name     channels  reduction  shape
=======  ========  =========  ===========================
embed    128       4          (B, 128, H/4, W/4)
stage1   128       4          (B, 128, H/4, W/4)
stage2   256       8          (B, 256, H/8, W/8)
stage3   512       16         (B, 512, H/16, W/16)
stage4   1024      32         (B, 1024, H/32, W/32)
=======  ========  =========  ===========================

``embed`` is the map right after patch embedding (before any attention block); the paper's
high-resolution injection feeds it to the decoder. ``stage4`` has timm's final LayerNorm applied.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from timm.models.swin_transformer import SwinTransformer, window_partition
from torch import nn

from nationmap.errors import InputError
from nationmap.models.presets import EncoderConfig

# Additive attention bias between tokens of different images: exp(-inf) = 0, so no information
# passes (timm's own shift mask uses -100, which would leak a 1e-44 share).
_BLOCKED = float("-inf")


class SwinEncoder(nn.Module):
    """Swin encoder returning the post-embedding map and the stage maps in NCHW.

    Input: (B, in_chans, img_size, img_size), standardised backscatter (dimensionless).
    Output of ``forward``: list of 1 + num_stages tensors, described by ``feature_info``.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.swin = SwinTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            in_chans=config.in_chans,
            num_classes=0,
            global_pool="",
            embed_dim=config.embed_dim,
            depths=config.depths,
            num_heads=config.num_heads,
            window_size=config.window_size,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=config.drop_path_rate,
        )
        self.feature_info: list[dict] = [
            dict(name="embed", num_chs=config.embed_dim, reduction=config.patch_size, module="swin.patch_embed")
        ]
        for i, (chs, stride) in enumerate(zip(config.stage_channels, config.stage_strides)):
            self.feature_info.append(dict(name=f"stage{i + 1}", num_chs=chs, reduction=stride, module=f"swin.layers.{i}"))

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of the post-embedding token grid for the configured img_size."""
        return tuple(self.swin.patch_embed.grid_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> post-embedding tokens (B, H/p, W/p, C), NHWC."""
        return self.swin.patch_embed(x)

    def forward_stages(self, tokens: torch.Tensor, image_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Run the Swin stages on post-embedding tokens.

        tokens: (B, H/p, W/p, C) NHWC.
        image_ids: optional (H/p, W/p) integer map, the same for the whole batch, naming the
            source image of each token (MixMAE). When given, a token attends only to tokens
            with the same id, in every (shifted) window of every block. Ids must be constant
            over the 2 x 2 groups that patch merging joins (MixMAE masks at the coarsest grid).
        Returns: list of num_stages NHWC maps (B, h_i, w_i, C_i); the last one LayerNorm-ed.
        """
        outputs = []
        x = tokens
        ids = image_ids
        for i, stage in enumerate(self.swin.layers):
            if ids is None:
                x = stage(x)
            else:
                x = stage.downsample(x)
                if i > 0:
                    ids = _merge_ids(ids)
                masks: dict = {}  # blocks of a stage alternate between two window layouts
                for block in stage.blocks:
                    key = (block.window_size, block.shift_size)
                    if key not in masks:
                        masks[key] = _image_attention_mask(block, ids)
                    x = _run_block_with_mask(block, x, masks[key])
            outputs.append(x)
        outputs[-1] = self.swin.norm(outputs[-1])
        return outputs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_chans, H, W) -> [embed, stage1, ..., stageN], NCHW (see ``feature_info``)."""
        tokens = self.embed(x)
        maps = [tokens] + self.forward_stages(tokens)
        return [m.permute(0, 3, 1, 2).contiguous() for m in maps]

    def load_encoder_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load encoder weights; accepts this module's state dict or a model's with an ``encoder.`` prefix.

        Raises InputError naming the first missing, unexpected or mis-shaped tensor.
        """
        state = encoder_state(state)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise InputError(
                f"encoder weights do not match this encoder ({what}; "
                f"{len(missing)} missing, {len(unexpected)} unexpected tensors)"
            )
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise InputError(
                    f"encoder weight {name!r} has shape {tuple(tensor.shape)}, "
                    f"this encoder expects {tuple(own[name].shape)} (another preset?)"
                )
        self.load_state_dict(state, strict=True)


def encoder_state(state: Mapping[str, torch.Tensor], prefix: str = "encoder.") -> dict[str, torch.Tensor]:
    """The encoder's tensors from a state dict: keys under ``prefix`` (stripped) when present, else all."""
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def _merge_ids(ids: torch.Tensor) -> torch.Tensor:
    """Image ids after 2 x 2 patch merging: (H, W) -> (ceil(H/2), ceil(W/2))."""
    merged = ids[::2, ::2]
    h, w = ids.shape
    if h % 2 == 0 and w % 2 == 0 and ids.device.type != "meta":
        groups = ids.reshape(h // 2, 2, w // 2, 2)
        if not bool((groups == merged[:, None, :, None]).all()):
            raise ValueError("image ids must be constant over the 2 x 2 groups merged by Swin")
    return merged


def _image_attention_mask(block: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Additive attention mask (nW, N, N) for one block: blocks pairs of tokens from different
    images, plus the block's own shifted-window mask. Follows timm's roll/pad/partition order."""
    wh, ww = block.window_size
    sh, sw = block.shift_size
    if sh or sw:
        ids = torch.roll(ids, shifts=(-sh, -sw), dims=(0, 1))
    h, w = ids.shape
    pad_h, pad_w = (wh - h % wh) % wh, (ww - w % ww) % ww
    # Padding tokens (id -1) are zeros in timm; attending to them carries no image content.
    ids = torch.nn.functional.pad(ids, (0, pad_w, 0, pad_h), value=-1)
    windows = window_partition(ids[None, :, :, None], (wh, ww)).reshape(-1, wh * ww)
    allowed = (windows[:, :, None] == windows[:, None, :]) | (windows[:, None, :] < 0)
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=ids.device).masked_fill(~allowed, _BLOCKED)
    if block.attn_mask is not None:
        mask = mask + block.attn_mask.to(mask.device, mask.dtype)
    return mask


def _run_block_with_mask(block: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """timm's block forward with ``mask`` in place of its shifted-window mask buffer."""
    saved = block.attn_mask
    block.attn_mask = mask
    try:
        return block(x)
    finally:
        block.attn_mask = saved
