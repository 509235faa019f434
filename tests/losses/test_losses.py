"""Every loss against a direct, independent NumPy implementation of its equation (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nationmap.losses import (
    BCEDiceLoss,
    BinaryDiceConfig,
    FocalDiceConfig,
    FocalDiceLoss,
    class_weights,
    masked_l1,
    patchify,
    sar_weight,
    unpatchify,
    weighted_mse,
)

IGN = 255


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def focal_dice_reference(logits, labels, alpha, alpha_scale, gamma, eps, lam_f, lam_d):
    """Equations (2)-(4) pixel by pixel, over the valid set Omega."""
    p = _softmax(logits)  # (B, K, H, W)
    b, k, h, w = p.shape
    focal_sum, n = 0.0, 0
    inter = np.zeros(k)
    psum = np.zeros(k)
    gsum = np.zeros(k)
    for bi in range(b):
        for i in range(h):
            for j in range(w):
                y = labels[bi, i, j]
                if y == IGN:
                    continue
                n += 1
                pt = p[bi, y, i, j]
                focal_sum += -alpha_scale * alpha[y] * (1 - pt) ** gamma * math.log(pt + eps)
                for c in range(k):
                    g = 1.0 if c == y else 0.0
                    inter[c] += p[bi, c, i, j] * g
                    psum[c] += p[bi, c, i, j]
                    gsum[c] += g
    focal = focal_sum / n if n else 0.0
    dice = 1 - np.mean([(2 * inter[c] + eps) / (psum[c] + gsum[c] + eps) for c in range(k)])
    return focal, dice, lam_f * focal + lam_d * dice


def test_class_weights_equation_1():
    f = np.array([0.6, 0.3, 0.1])
    w = 1 - f
    np.testing.assert_allclose(class_weights(f), w / w.sum(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(class_weights([60, 30, 10]), w / w.sum(), atol=1e-15)  # counts work too
    assert class_weights(f).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("alpha_scale, gamma, eps", [(2.25, 1.1, 1e-6), (1.0, 0.0, 1e-3), (3.0, 2.0, 1.0)])
def test_focal_dice_matches_equations(alpha_scale, gamma, eps):
    rng = np.random.default_rng(3)
    k = 5
    logits = rng.normal(0, 2, size=(2, k, 6, 7))
    labels = rng.integers(0, k - 1, size=(2, 6, 7))  # class k-1 absent from truth
    labels[rng.random(labels.shape) < 0.2] = IGN  # ignore pixels
    freqs = rng.random(k) + 0.01
    alpha = class_weights(freqs)
    cfg = FocalDiceConfig(alpha_scale=alpha_scale, gamma=gamma, eps=eps, lambda_focal=0.57, lambda_dice=0.32)
    loss = FocalDiceLoss(alpha, cfg)
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    focal, dice = loss.terms(t_logits, t_labels)
    ref_f, ref_d, ref_total = focal_dice_reference(logits, labels, alpha, alpha_scale, gamma, eps, 0.57, 0.32)
    assert float(focal) == pytest.approx(ref_f, abs=1e-6)
    assert float(dice) == pytest.approx(ref_d, abs=1e-6)
    assert float(loss(t_logits, t_labels)) == pytest.approx(ref_total, abs=1e-6)
    # float32 logits (the training dtype) agree to float32 precision
    assert float(loss(t_logits.float(), t_labels)) == pytest.approx(ref_total, abs=1e-5)


def test_focal_dice_defaults_are_the_papers():
    c = FocalDiceConfig()
    assert (c.alpha_scale, c.gamma, c.lambda_focal, c.lambda_dice) == (2.25, 1.1, 0.57, 0.32)


def test_focal_dice_all_ignored_is_finite_zero():
    loss = FocalDiceLoss(class_weights([1, 1, 1]))
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    value = loss(logits, torch.full((1, 4, 4), IGN))
    assert float(value.detach()) == 0.0
    value.backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_dice_rejects_bad_labels():
    loss = FocalDiceLoss(class_weights([1, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        loss(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 7))


def bce_dice_reference(logits, labels, eps, lam_b, lam_d):
    bce, n, inter, psum, gsum = 0.0, 0, 0.0, 0.0, 0.0
    for z, y in zip(logits.ravel(), labels.ravel()):
        if y == IGN:
            continue
        p = 1 / (1 + math.exp(-z))
        bce += -(y * math.log(p) + (1 - y) * math.log(1 - p))
        n += 1
        inter += p * y
        psum += p
        gsum += y
    bce /= n
    dice = 1 - (2 * inter + eps) / (psum + gsum + eps)
    return bce, dice, lam_b * bce + lam_d * dice


def test_bce_dice_matches_equations():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(3, 1, 5, 6))
    labels = rng.integers(0, 2, size=(3, 5, 6))
    labels[rng.random(labels.shape) < 0.25] = IGN
    loss = BCEDiceLoss(BinaryDiceConfig(lambda_bce=1.0, lambda_dice=1.0, eps=1e-6))
    bce, dice = loss.terms(torch.from_numpy(logits), torch.from_numpy(labels))
    ref_b, ref_d, ref_total = bce_dice_reference(logits[:, 0], labels, 1e-6, 1.0, 1.0)
    assert float(bce) == pytest.approx(ref_b, abs=1e-6)
    assert float(dice) == pytest.approx(ref_d, abs=1e-6)
    assert float(loss(torch.from_numpy(logits), torch.from_numpy(labels))) == pytest.approx(ref_total, abs=1e-6)


def test_water_threshold_half():
    loss = BCEDiceLoss()
    logits = torch.tensor([[[-0.01, 0.0, 0.01]]])
    assert loss.predict(logits).tolist() == [[[0, 1, 1]]]


def sar_weight_reference(db, scale=1.0):
    w = np.empty_like(db)
    for bi in range(db.shape[0]):
        for ci in range(db.shape[1]):
            p = 10 ** (db[bi, ci] / 10)
            q = (p - p.min()) / (p.max() - p.min() + 1e-6)
            w[bi, ci] = np.exp(scale * (1 - q))
    return w


def test_sar_weight_is_one_at_brightest_and_e_at_darkest():
    rng = np.random.default_rng(0)
    db = rng.normal(-12, 6, size=(3, 1, 16, 16))
    w = sar_weight(torch.from_numpy(db)).numpy()
    np.testing.assert_allclose(w, sar_weight_reference(db), rtol=1e-5)
    for i in range(3):
        bright = np.unravel_index(db[i, 0].argmax(), db[i, 0].shape)
        dark = np.unravel_index(db[i, 0].argmin(), db[i, 0].shape)
        assert w[i, 0][bright] == pytest.approx(1.0, abs=1e-4)
        assert w[i, 0][dark] == pytest.approx(math.e, abs=1e-6)
        assert (w[i] >= 1.0 - 1e-6).all() and (w[i] <= math.e + 1e-6).all()


def test_sar_weight_uses_linear_power_not_db():
    # The middle dB value is far from the middle power value: q(-10 dB) between 0 dB and -20 dB is ~0.099.
    db = torch.tensor([[[[0.0, -10.0, -20.0]]]])
    w = sar_weight(db)[0, 0, 0]
    p = np.array([1.0, 0.1, 0.01])
    q = (p - p.min()) / (p.max() - p.min() + 1e-6)
    np.testing.assert_allclose(w.numpy(), np.exp(1 - q), rtol=1e-6)
    assert w[1] > 2.2  # a dB-linear weight would give exp(0.5) = 1.65


def test_sar_weight_ignores_no_data():
    db = torch.tensor([[[[0.0, -10.0, float("nan"), -20.0]]]])
    w = sar_weight(db)
    assert w[0, 0, 0, 2] == 0.0
    assert w[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-4) and w[0, 0, 0, 3] == pytest.approx(math.e)


def test_weighted_mse_and_masked_l1_match_formulas():
    rng = np.random.default_rng(1)
    r, t, w = rng.normal(size=(3, 2, 4, 5)), rng.normal(size=(3, 2, 4, 5)), rng.random((3, 2, 4, 5))
    assert float(weighted_mse(*map(torch.from_numpy, (r, t, w)))) == pytest.approx(np.mean(w * (r - t) ** 2), abs=1e-7)
    assert float(weighted_mse(torch.from_numpy(r), torch.from_numpy(t))) == pytest.approx(np.mean((r - t) ** 2))
    mask = (rng.random((3, 1, 4, 5)) < 0.6).astype(np.float64)
    ref = np.sum(w * np.abs(r - t) * mask) / (mask.sum() + 1e-5) / 2
    got = masked_l1(*map(torch.from_numpy, (r, t, mask, w)))
    assert float(got) == pytest.approx(ref, abs=1e-7)


def test_patchify_round_trip():
    x = torch.randn(2, 1, 64, 96)
    p = patchify(x, 32)
    assert p.shape == (2, 6, 1024)
    assert torch.equal(p[0, 1], x[0, 0, :32, 32:64].reshape(-1))
    assert torch.equal(unpatchify(p, 32, 1, (2, 3)), x)
