"""Swin encoder: the paper's configuration, feature maps, MixMAE's image-restricted attention."""

from __future__ import annotations

import pytest
import torch

from nationmap.errors import InputError
from nationmap.models import EncoderConfig, MixMAE, MixMAEConfig, SegmentationConfig, SegmentationModel, SwinEncoder
from nationmap.models.presets import PRESETS, get_preset


def test_swin_b_has_the_papers_configuration_and_feature_shapes():
    cfg = get_preset("swin-b").encoder
    assert (cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.window_size, cfg.patch_size, cfg.in_chans, cfg.img_size) == (
        128, (2, 2, 18, 2), (4, 8, 16, 32), 8, 4, 1, 256)
    enc = SwinEncoder(cfg).eval()
    swin = enc.swin
    assert swin.patch_embed.proj.in_channels == 1 and swin.patch_embed.proj.kernel_size == (4, 4)
    for i, stage in enumerate(swin.layers):
        assert len(stage.blocks) == cfg.depths[i]
        for j, block in enumerate(stage.blocks):
            assert block.attn.num_heads == cfg.num_heads[i]
            assert block.norm1.normalized_shape == (128 * 2**i,)
            assert block.window_size == (8, 8)
            # shifted windows on odd blocks, except stage 4 whose 8 x 8 map is a single window
            assert block.shift_size == ((4, 4) if j % 2 and i < 3 else (0, 0))
    with torch.no_grad():
        maps = enc(torch.randn(1, 1, 256, 256))
    assert [tuple(m.shape) for m in maps] == [
        (1, 128, 64, 64), (1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 16, 16), (1, 1024, 8, 8)]
    assert [(f["name"], f["num_chs"], f["reduction"]) for f in enc.feature_info] == [
        ("embed", 128, 4), ("stage1", 128, 4), ("stage2", 256, 8), ("stage3", 512, 16), ("stage4", 1024, 32)]
    assert not torch.equal(maps[0], maps[1])  # the post-embedding map is before the first blocks


def test_presets_come_from_one_config():
    assert get_preset("swin-t").encoder.depths == (2, 2, 6, 2)
    assert get_preset("swin-s").encoder.depths == (2, 2, 18, 2)
    assert set(PRESETS) >= {"swin-b", "swin-s", "swin-t", "tiny"}
    with pytest.raises(InputError, match="unknown model preset"):
        get_preset("swin-xl")


@pytest.mark.parametrize("bad, message", [
    (dict(num_heads=(5, 8, 16, 32)), "not divisible"),
    (dict(img_size=250), "multiple of the encoder stride"),
    (dict(depths=(2, 2)), "same, non-zero length"),
])
def test_encoder_config_is_validated(bad, message):
    with pytest.raises(InputError, match=message):
        EncoderConfig(**bad)


def _mixed_outputs(enc: SwinEncoder, x: torch.Tensor, ids: torch.Tensor, restrict: bool):
    tokens = enc.embed(x)
    mixed = torch.where(ids[None, :, :, None].bool(), tokens.roll(-1, dims=0), tokens)
    return enc.forward_stages(mixed, ids if restrict else None)


@pytest.mark.parametrize("restrict", [True, False])
def test_mixing_leaves_no_information_path_between_images(restrict):
    torch.manual_seed(0)
    enc = SwinEncoder(get_preset("tiny").encoder).eval()
    coarse = (torch.rand(8, 8) < 0.5).long()
    ids = coarse.repeat_interleave(8, 0).repeat_interleave(8, 1)  # token grid 64 x 64
    x = torch.randn(2, 1, 256, 256)
    x_changed = x.clone()
    x_changed[1] = torch.randn(1, 256, 256) * 3  # image B (the partner of image A = x[0])
    with torch.no_grad():
        before = _mixed_outputs(enc, x, ids, restrict)
        after = _mixed_outputs(enc, x_changed, ids, restrict)
    for i, (a, b) in enumerate(zip(before, after)):
        own = ids[:: 2**i, :: 2**i] == 0  # positions of image A at stage i + 1
        diff_a = (a[0][own] - b[0][own]).abs().max().item()
        diff_b = (a[0][~own] - b[0][~own]).abs().max().item()
        assert diff_b > 1e-3  # B's tokens did change
        if restrict:
            assert diff_a == 0.0
        else:
            assert diff_a > 1e-3  # unrestricted attention leaks B into A: the check can fail


def test_pretrained_encoder_loads_into_segmentation_model():
    torch.manual_seed(0)
    pre = MixMAE(MixMAEConfig.from_preset("tiny"))
    seg = SegmentationModel(SegmentationConfig.from_preset("tiny", "lulc"))
    x = torch.randn(1, 1, 256, 256)
    seg.eval(), pre.eval()
    with torch.no_grad():
        assert not torch.equal(seg.encoder(x)[-1], pre.encoder(x)[-1])
        seg.encoder.load_encoder_state(pre.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(seg.encoder(x), pre.encoder(x)))


def test_foreign_encoder_weights_give_a_clear_error():
    seg = SegmentationModel(SegmentationConfig.from_preset("tiny", "lulc"))
    other = SwinEncoder(get_preset("tiny").encoder.replace(embed_dim=32, num_heads=(1, 2, 4, 8)))
    with pytest.raises(InputError, match="has shape .*another preset"):
        seg.encoder.load_encoder_state(other.state_dict())
    with pytest.raises(InputError, match="do not match this encoder"):
        seg.encoder.load_encoder_state({"decoder.weight": torch.zeros(3)})
