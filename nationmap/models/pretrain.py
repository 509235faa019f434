"""Self-supervised pretraining models: SAR-W-MixMAE and SAR-W-SimMIM (``sar-w-mixmae.md``).

Both wrap a ``SwinEncoder`` under the attribute ``encoder``, so their state dict loads into a
``SegmentationModel`` with ``model.encoder.load_encoder_state(pretrain_state)``.

Inputs of ``forward``:
    x: (B, 1, H, W) standardised HH (dB minus the training mean, over the std; no-data filled).
    sigma0_db: (B, 1, H, W) the raw calibrated sigma0 in dB, for the SAR weight (NaN = no data).
    valid: optional (B, 1, H, W) bool; no-data pixels are left out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from nationmap.errors import InputError
from nationmap.losses.reconstruction import masked_l1, normalise_patches, patchify, sar_weight, unpatchify, weighted_mse
from nationmap.models.presets import EncoderConfig, config_from_dict, config_to_dict, get_preset
from nationmap.models.swin import SwinEncoder


@dataclass(frozen=True)
class PretrainOutput:
    loss: torch.Tensor  # scalar
    reconstruction: torch.Tensor  # (B, C, H, W); per-patch-normalised units when norm_pix_loss
    mask: torch.Tensor  # MixMAE: (gh, gw) 1 = token taken from the partner image; SimMIM: (B, 1, H, W) 1 = masked
    target: torch.Tensor  # (B, C, H, W) what the reconstruction is compared with


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise InputError(f"{name} must be in (0, 1), got {value}")


def _loss_weight(
    enabled: bool, scale: float, sigma0_db: torch.Tensor | None, valid: torch.Tensor | None
) -> torch.Tensor | None:
    if not enabled:
        return None
    if sigma0_db is None:
        raise ValueError("the SAR weight needs the raw sigma0 in dB (sigma0_db)")
    return sar_weight(sigma0_db, valid, scale)


@dataclass(frozen=True)
class MixMAEConfig:
    """SAR-W-MixMAE (``sar_weight=True``) or plain MixMAE (``sar_weight=False``)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask_ratio: float = 0.5
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True
    sar_weight: bool = True
    weight_scale: float = 1.0  # s in w = exp(s * (1 - q))

    def __post_init__(self):
        _check_fraction("mask_ratio", self.mask_ratio)
        if self.decoder_dim % self.decoder_heads or self.decoder_depth < 1:
            raise InputError("decoder_dim must be divisible by decoder_heads, and decoder_depth >= 1")

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "MixMAEConfig":
        p = get_preset(preset)
        kwargs = dict(encoder=p.encoder, decoder_dim=p.mae_decoder_dim, decoder_depth=p.mae_decoder_depth,
                      decoder_heads=p.mae_decoder_heads)
        kwargs.update(overrides)
        return cls(**kwargs)

    to_dict = config_to_dict

    @classmethod
    def from_dict(cls, d: dict) -> "MixMAEConfig":
        return config_from_dict(cls, d)


class MixMAE(nn.Module):
    """Mixed and masked autoencoder on the Swin encoder.

    Image i is mixed with its partner i+1 (cyclic, so any batch of >= 2 works): after patch
    embedding, tokens come from the partner where the mask M = 1 (one random mask per batch at the
    encoder's coarsest grid, ratio ``mask_ratio``), from image i elsewhere. Attention is restricted
    to tokens of the same image in every block. A transformer decoder is run twice per mixed
    sample, once per source image with the other image's positions replaced by a mask token, and
    the two passes together reconstruct every position of every image exactly once.
    """

    def __init__(self, config: MixMAEConfig):
        super().__init__()
        self.config = config
        enc = config.encoder
        self.encoder = SwinEncoder(enc)
        self.patch = enc.max_stride
        self.grid = (enc.img_size // self.patch, enc.img_size // self.patch)
        self.token_repeat = self.patch // enc.patch_size
        d = config.decoder_dim
        self.decoder_embed = nn.Linear(enc.stage_channels[-1], d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        pos = build_sincos2d_pos_embed(list(self.grid), d)
        self.register_buffer("decoder_pos", pos.reshape(1, -1, d), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(d, config.decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
            for _ in range(config.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, self.patch * self.patch * enc.in_chans)

    def random_mask(self, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """(gh, gw) long mask with exactly round(mask_ratio * gh * gw) ones (1 = partner's token)."""
        n = self.grid[0] * self.grid[1]
        k = int(round(self.config.mask_ratio * n))
        order = torch.randperm(n, generator=generator)
        mask = torch.zeros(n, dtype=torch.long)
        mask[order[:k]] = 1
        return mask.reshape(self.grid).to(device)

    def encode_mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mix x with its cyclic partner and encode: (B, C, H, W), (gh, gw) -> (B, gh, gw, C_last)."""
        ids = mask.repeat_interleave(self.token_repeat, 0).repeat_interleave(self.token_repeat, 1)
        tokens = self.encoder.embed(x)
        mixed = torch.where(ids[None, :, :, None].bool(), tokens.roll(-1, dims=0), tokens)
        return self.encoder.forward_stages(mixed, ids)[-1]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = z + self.decoder_pos
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward(
        self,
        x: torch.Tensor,
        sigma0_db: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> PretrainOutput:
        b, c = x.shape[:2]
        if b < 2:
            raise ValueError("MixMAE mixes pairs of images: the batch needs at least 2")
        if mask is None:
            mask = self.random_mask(device=x.device)
        feats = self.encode_mixed(x, mask).flatten(1, 2)  # (B, L, C_last)
        z = self.decoder_embed(feats)
        from_partner = mask.flatten().bool()[None, :, None]  # (1, L, 1)
        token = self.mask_token.to(z.dtype)
        own_pass = torch.where(from_partner, token, z)  # reconstructs image i where M = 1
        partner_pass = torch.where(from_partner, z, token)  # reconstructs image i+1 where M = 0
        pred = self.decode(torch.cat([own_pass, partner_pass])).float()
        pred_own, pred_partner = pred[:b], pred[b:].roll(1, dims=0)  # roll: row i now reconstructs image i
        recon = torch.where(from_partner, pred_own, pred_partner)  # (B, L, P): each position from the pass that masked it

        target = patchify(x.float(), self.patch)
        if self.config.norm_pix_loss:
            target = normalise_patches(target)
        weight = _loss_weight(self.config.sar_weight, self.config.weight_scale, sigma0_db, valid)
        loss = weighted_mse(
            recon,
            target,
            None if weight is None else patchify(weight, self.patch),
            None if valid is None else patchify(valid.expand_as(x).float(), self.patch).bool(),
        )
        return PretrainOutput(
            loss=loss,
            reconstruction=unpatchify(recon, self.patch, c, self.grid),
            mask=mask,
            target=unpatchify(target, self.patch, c, self.grid),
        )


@dataclass(frozen=True)
class SimMIMConfig:
    """SAR-W-SimMIM (``sar_weight=True``) or plain SimMIM."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask_patch: int = 32
    mask_ratio: float = 0.6
    sar_weight: bool = True
    weight_scale: float = 1.0

    def __post_init__(self):
        _check_fraction("mask_ratio", self.mask_ratio)
        if self.mask_patch % self.encoder.patch_size or self.encoder.img_size % self.mask_patch:
            raise InputError(
                f"mask_patch {self.mask_patch} must be a multiple of the patch size {self.encoder.patch_size} "
                f"and divide img_size {self.encoder.img_size}"
            )

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "SimMIMConfig":
        return cls(encoder=get_preset(preset).encoder, **overrides)

    to_dict = config_to_dict

    @classmethod
    def from_dict(cls, d: dict) -> "SimMIMConfig":
        return config_from_dict(cls, d)


class SimMIM(nn.Module):
    """Masked image modelling with a linear decoder: masked tokens are replaced by a learned token
    after patch embedding; a 1 x 1 conv + pixel shuffle predicts the pixels from the last stage;
    L1 over masked (valid) pixels, times the SAR weight."""

    def __init__(self, config: SimMIMConfig):
        super().__init__()
        self.config = config
        enc = config.encoder
        self.encoder = SwinEncoder(enc)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, enc.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        stride = enc.max_stride
        self.decoder = nn.Sequential(
            nn.Conv2d(enc.stage_channels[-1], stride * stride * enc.in_chans, 1), nn.PixelShuffle(stride)
        )
        self.grid = (enc.img_size // config.mask_patch, enc.img_size // config.mask_patch)

    def random_mask(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """(B, gh, gw) long, per image exactly round(mask_ratio * gh * gw) masked cells."""
        n = self.grid[0] * self.grid[1]
        k = int(round(self.config.mask_ratio * n))
        scores = torch.rand(batch, n, generator=generator)
        mask = torch.zeros(batch, n, dtype=torch.long)
        mask.scatter_(1, scores.argsort(dim=1)[:, :k], 1)
        return mask.reshape(batch, *self.grid).to(device)

    def forward(
        self,
        x: torch.Tensor,
        sigma0_db: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> PretrainOutput:
        if mask is None:
            mask = self.random_mask(x.shape[0], device=x.device)
        tokens = self.encoder.embed(x)
        rep = self.config.mask_patch // self.config.encoder.patch_size
        m_tok = mask.repeat_interleave(rep, 1).repeat_interleave(rep, 2)[..., None].to(tokens.dtype)
        tokens = tokens * (1 - m_tok) + self.mask_token.to(tokens.dtype) * m_tok
        z = self.encoder.forward_stages(tokens)[-1].permute(0, 3, 1, 2)
        recon = self.decoder(z).float()
        m_px = mask[:, None].repeat_interleave(self.config.mask_patch, 2).repeat_interleave(self.config.mask_patch, 3)
        if valid is not None:
            m_px = m_px * valid.to(m_px.dtype)
        weight = _loss_weight(self.config.sar_weight, self.config.weight_scale, sigma0_db, valid)
        loss = masked_l1(recon, x, m_px, weight)
        return PretrainOutput(loss=loss, reconstruction=recon, mask=m_px, target=x)
