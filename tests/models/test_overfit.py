"""The tiny preset overfits a handful of synthetic SAR patches on the CPU (the model can learn)."""

from __future__ import annotations

import numpy as np
import torch

from nationmap.losses import FocalDiceLoss, class_weights
from nationmap.metrics import ConfusionMatrix
from nationmap.models import SegmentationConfig, SegmentationModel

CLASS_DB = np.array([-22.0, -2.0, -14.0, -7.0])  # water, built-up, cropland, forest (dB)


def synthetic_patches(n=4, size=64, seed=0):
    """Label maps of discs and bands; HH = class mean dB with 4-look gamma speckle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.full((n, size, size), 3, dtype=np.int64)
    for i in range(n):
        labels[i][(yy + i * 7) % 40 < 12] = 2
        for _ in range(3):
            cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(5, 11))]
            labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = int(rng.integers(0, 2))
    power = 10 ** (CLASS_DB[labels] / 10) * rng.gamma(4, 1 / 4, labels.shape)
    db = 10 * np.log10(power)
    x = (db - db.mean()) / db.std()
    return torch.from_numpy(x[:, None].astype(np.float32)), torch.from_numpy(labels)


def test_tiny_preset_overfits_a_handful_of_patches():
    torch.manual_seed(0)
    x, y = synthetic_patches()
    encoder = SegmentationConfig.from_preset("tiny").encoder.replace(img_size=64)
    model = SegmentationModel(SegmentationConfig.from_preset("tiny", "lulc", encoder=encoder, num_classes=4))
    freq = np.bincount(y.ravel().numpy(), minlength=4)
    loss_fn = FocalDiceLoss(class_weights(freq))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    model.train()
    for _ in range(150):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    scores = ConfusionMatrix(4).update(pred, y).scores()
    assert np.mean(losses[-10:]) < 0.4 * np.mean(losses[:5])
    assert scores.miou > 0.8, scores
