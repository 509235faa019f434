"""SAR-W-MixMAE and SAR-W-SimMIM: masking, dual reconstruction, the weighted losses, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nationmap.errors import InputError
from nationmap.losses import normalise_patches, patchify, sar_weight
from nationmap.models import MixMAE, MixMAEConfig, SimMIM, SimMIMConfig

MEAN_DB, STD_DB = -10.4327, 5.8041  # the authors' ALOS-2 HH normalisation


def _batch(b=3, size=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    db = torch.randn(b, 1, size, size, generator=g) * 6 - 12
    return (db - MEAN_DB) / STD_DB, db


def _mixmae(**kw):
    torch.manual_seed(0)
    return MixMAE(MixMAEConfig.from_preset("tiny", **kw)).eval()


def test_mixmae_defaults_are_the_authors():
    c = MixMAEConfig.from_preset("swin-b")
    assert (c.mask_ratio, c.decoder_dim, c.decoder_depth, c.decoder_heads, c.norm_pix_loss, c.sar_weight) == (
        0.5, 512, 8, 16, True, True)
    assert MixMAEConfig.from_dict(c.to_dict()) == c


def test_mixmae_mask_has_exact_ratio():
    m = _mixmae()
    mask = m.random_mask(torch.Generator().manual_seed(1))
    assert mask.shape == (8, 8) and int(mask.sum()) == 32


@pytest.mark.parametrize("region", [1, 0])
def test_each_position_is_reconstructed_without_seeing_itself(region):
    """Dual reconstruction: image i's pixels where M == region are rebuilt by the pass that hid them,
    so changing exactly those pixels leaves their reconstruction unchanged (and changes the rest)."""
    m = _mixmae()
    mask = m.random_mask(torch.Generator().manual_seed(2))
    x, db = _batch()
    px = mask.repeat_interleave(32, 0).repeat_interleave(32, 1) == region
    x2 = x.clone()
    x2[1, 0][px] = torch.randn(int(px.sum())) * 2
    with torch.no_grad():
        r1 = m(x, db, mask=mask).reconstruction
        r2 = m(x2, db, mask=mask).reconstruction
    assert torch.equal(r1[1, 0][px], r2[1, 0][px])
    assert not torch.allclose(r1[1, 0][~px], r2[1, 0][~px])


def test_mixmae_loss_is_weighted_mse_on_normalised_patches():
    m = _mixmae()
    x, db = _batch()
    mask = m.random_mask(torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = m(x, db, mask=mask)
    target = patchify(x, 32)
    ref_target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    np.testing.assert_allclose(patchify(out.target, 32).numpy(), ref_target.numpy(), atol=1e-5)
    # weight from the raw dB (linear power), independently computed
    p = 10 ** (db.double() / 10)
    lo = p.amin(dim=(-2, -1), keepdim=True)
    hi = p.amax(dim=(-2, -1), keepdim=True)
    w = torch.exp(1 - (p - lo) / (hi - lo + 1e-6))
    ref = (w * (out.reconstruction.double() - out.target.double()) ** 2).mean()
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-5)
    plain = _mixmae(sar_weight=False)
    with torch.no_grad():
        out_plain = plain(x, mask=mask)
    assert float(out_plain.loss) == pytest.approx(float(((out_plain.reconstruction - out_plain.target) ** 2).mean()), rel=1e-5)
    assert float(out_plain.loss) != pytest.approx(float(out.loss), rel=1e-3)


def test_sar_weight_comes_from_db_not_from_the_standardised_input():
    m = _mixmae()
    x, db = _batch()
    mask = m.random_mask(torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = m(x, db, mask=mask).loss
        # a constant dB offset scales linear power, which the per-image min-max removes ...
        assert float(m(x, db + 3.0, mask=mask).loss) == pytest.approx(float(a), rel=1e-5)
        # ... a change of dB contrast does not, although the network input x is the same
        b = m(x, db * 1.5, mask=mask).loss
    assert float(a) != pytest.approx(float(b), rel=1e-3)
    with pytest.raises(ValueError, match="sigma0_db"):
        m(x, mask=mask)


def test_mixmae_no_data_pixels_leave_the_loss():
    m = _mixmae()
    x, db = _batch()
    valid = torch.ones_like(x, dtype=torch.bool)
    valid[:, :, :, :128] = False
    db_nodata = db.clone()
    db_nodata[~valid] = float("nan")
    mask = m.random_mask(torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = m(x, db_nodata, valid, mask=mask)
        w = sar_weight(db_nodata, valid)
    assert torch.isfinite(out.loss)
    half = (slice(None), slice(None), slice(None), slice(128, None))
    ref = (w[half] * (out.reconstruction[half] - out.target[half]) ** 2).mean()
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-5)


def test_mixmae_needs_pairs():
    m = _mixmae()
    x, db = _batch(1)
    with pytest.raises(ValueError, match="at least 2"):
        m(x, db)


@pytest.mark.parametrize("cls, cfg", [(MixMAE, MixMAEConfig), (SimMIM, SimMIMConfig)])
def test_pretraining_gradients_reach_every_parameter(cls, cfg):
    torch.manual_seed(0)
    model = cls(cfg.from_preset("tiny")).train()
    x, db = _batch(2)
    model(x, db).loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert dead == []


@pytest.mark.parametrize("mask_patch, ratio", [(32, 0.6), (16, 0.4)])
def test_simmim_mask_patch_and_ratio(mask_patch, ratio):
    model = SimMIM(SimMIMConfig.from_preset("tiny", mask_patch=mask_patch, mask_ratio=ratio))
    mask = model.random_mask(4, torch.Generator().manual_seed(0))
    cells = (256 // mask_patch) ** 2
    assert mask.shape == (4, 256 // mask_patch, 256 // mask_patch)
    assert mask.flatten(1).sum(1).tolist() == [round(ratio * cells)] * 4
    assert not torch.equal(mask[0], mask[1])  # per-image masks


def test_simmim_loss_is_weighted_l1_over_masked_pixels():
    torch.manual_seed(0)
    model = SimMIM(SimMIMConfig.from_preset("tiny")).eval()
    x, db = _batch(2)
    mask = model.random_mask(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x, db, mask=mask)
    m_px = mask[:, None].repeat_interleave(32, 2).repeat_interleave(32, 3).double()
    w = sar_weight(db).double()
    ref = (w * (out.reconstruction.double() - x.double()).abs() * m_px).sum() / (m_px.sum() + 1e-5) / 1
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-5)
    # the masked pixels' own values never reach the encoder
    x2 = x.clone()
    x2[m_px.bool()] = 5.0
    with torch.no_grad():
        assert torch.equal(model(x2, db, mask=mask).reconstruction, out.reconstruction)


def test_simmim_config_is_validated():
    with pytest.raises(InputError, match="mask_patch"):
        SimMIMConfig.from_preset("tiny", mask_patch=30)
    with pytest.raises(InputError, match="mask_ratio"):
        SimMIMConfig.from_preset("tiny", mask_ratio=1.0)


def test_norm_pix_target_helper():
    t = normalise_patches(torch.randn(2, 3, 100) * 4 + 7)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 3), atol=1e-4)
