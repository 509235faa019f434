"""UPerNet segmentation model: each switch changes the architecture as named; gradients flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nationmap.errors import InputError
from nationmap.losses import BCEDiceLoss, FocalDiceLoss, class_weights
from nationmap.metrics import ConfusionMatrix
from nationmap.models import SegmentationConfig, SegmentationModel
from nationmap.models.upernet import InterpolationHead, RefineUpHead

SMALL = dict(encoder=SegmentationConfig.from_preset("tiny").encoder.replace(img_size=64))


def _model(**switches) -> SegmentationModel:
    cfg = SegmentationConfig.from_preset("tiny", switches.pop("task", "lulc"), **SMALL, **switches)
    return SegmentationModel(cfg)


def _classifier_input_size(model: SegmentationModel, x: torch.Tensor):
    seen = {}

    def record(module, inputs, output):
        seen["hw"] = tuple(inputs[0].shape[-2:])

    handle = model.head.classifier.register_forward_hook(record)
    with torch.no_grad():
        out = model.eval()(x)
    handle.remove()
    return seen["hw"], out


def test_highres_switch_injects_the_post_embedding_map():
    ch = 48
    on, off = _model(highres=True), _model(highres=False)
    assert hasattr(on.decoder, "embed_conv") and not hasattr(off.decoder, "embed_conv")
    assert on.decoder.fuse[0].in_channels == 5 * ch and off.decoder.fuse[0].in_channels == 4 * ch
    assert on.decoder.embed_conv[0].in_channels == on.encoder.feature_info[0]["num_chs"]
    # the injected map really reaches the output: zeroing its conv changes the logits
    x = torch.randn(2, 1, 64, 64)
    on.eval()
    with torch.no_grad():
        before = on(x)
        on.decoder.embed_conv[0].weight.zero_()
        after = on(x)
    assert not torch.allclose(before, after)


def test_refine_up_switch_classifies_at_full_resolution():
    x = torch.randn(2, 1, 64, 64)
    refine, base = _model(refine_up=True), _model(refine_up=False)
    assert isinstance(refine.head, RefineUpHead) and isinstance(base.head, InterpolationHead)
    assert len(refine.head.refine) == 2  # stride 4 -> 2 -> 1: two (conv, x2) steps
    hw_refine, out_refine = _classifier_input_size(refine, x)
    hw_base, out_base = _classifier_input_size(base, x)
    assert hw_refine == (64, 64) and hw_base == (16, 16)
    assert out_refine.shape == out_base.shape == (2, 9, 64, 64)


@pytest.mark.parametrize("task, classes", [("lulc", 9), ("water", 1)])
def test_task_sets_the_number_of_logits(task, classes):
    model = _model(task=task)
    assert model.head.classifier.out_channels == classes
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 64, 64)).shape == (1, classes, 64, 64)


@pytest.mark.parametrize("highres, refine_up", [(False, False), (True, False), (False, True), (True, True)])
def test_gradients_reach_every_parameter(highres, refine_up):
    torch.manual_seed(0)
    model = _model(highres=highres, refine_up=refine_up).train()
    logits = model(torch.randn(2, 1, 64, 64))
    FocalDiceLoss(class_weights([1.0] * 9))(logits, torch.randint(0, 9, (2, 64, 64))).backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert dead == []


def test_water_model_gradients():
    model = _model(task="water").train()
    BCEDiceLoss()(model(torch.randn(2, 1, 64, 64)), torch.randint(0, 2, (2, 64, 64))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_config_round_trip_and_validation():
    cfg = SegmentationConfig.from_preset("swin-b", "water", highres=False)
    assert cfg.num_classes == 1 and cfg.decoder_channels == 512 and cfg.pool_scales == (1, 2, 3, 6)
    assert SegmentationConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown task"):
        SegmentationConfig.from_preset("tiny", "roads")
    with pytest.raises(InputError, match="num_classes"):
        SegmentationConfig(num_classes=0)
    guided = SegmentationConfig.from_preset("tiny", "lulc", guide=True)
    assert SegmentationConfig.from_dict(guided.to_dict()) == guided and guided.guide_channels == 16
    with pytest.raises(InputError, match="guide_channels must be >= 1"):
        SegmentationConfig(guide=True, guide_channels=0)


def test_uses_batchnorm_convs_in_decoder():
    model = _model()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules())
    assert len(model.decoder.ppm.branches) == 4


def test_image_guide_starts_as_the_head_then_corrects_it():
    torch.manual_seed(0)
    guided = _model(refine_up=False, guide=True).eval()
    plain = _model(refine_up=False, guide=False).eval()
    assert not hasattr(plain, "guide") and guided.guide.image[0][0].in_channels == 1
    plain.load_state_dict({k: v for k, v in guided.state_dict().items() if not k.startswith("guide.")})
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(guided(x), plain(x))  # the zero-initialised last conv: no change at the start
        guided.guide.out.weight.normal_()
        assert not torch.allclose(guided(x), plain(x))


def thin_lines(n: int, size: int = 64, seed: int = 0):
    """Bright land crossed by dark 1-px rows and columns (rivers): standardised HH, labels 1 = river."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        labels[i, rng.choice(size, 3, replace=False), :] = 1
        labels[i, :, rng.choice(size, 3, replace=False)] = 1
    db = np.where(labels == 1, -22.0, -6.0) + rng.normal(0.0, 1.0, labels.shape)
    return torch.from_numpy(((db - db.mean()) / db.std())[:, None].astype(np.float32)), torch.from_numpy(labels)


def _river_iou(guide: bool) -> float:
    torch.manual_seed(0)
    x, y = thin_lines(4)
    cfg = SegmentationConfig.from_preset("tiny", "lulc", **SMALL, num_classes=2, refine_up=False, guide=guide)
    model = SegmentationModel(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    loss_fn = FocalDiceLoss(class_weights([0.9, 0.1]))
    for _ in range(60):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    return ConfusionMatrix(2).update(pred, y).scores().classes[1].iou


def test_image_guide_puts_1px_rivers_back_in_place():
    """A 1-px river inside a 4 x 4 token: the stride-4 head paints it 4 px wide, the guide does not."""
    plain, guided = _river_iou(False), _river_iou(True)
    assert guided > 0.8 and guided > plain + 0.2, (plain, guided)


def test_image_guide_gradients_reach_it_after_one_step():
    torch.manual_seed(0)
    model = _model(refine_up=False, guide=True).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = FocalDiceLoss(class_weights([1.0] * 9))
    for _ in range(2):  # step 1 moves the zero-initialised last conv; step 2's gradients reach the image convs
        opt.zero_grad()
        loss_fn(model(torch.randn(2, 1, 64, 64)), torch.randint(0, 9, (2, 64, 64))).backward()
        opt.step()
    dead = [n for n, p in model.guide.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert dead == []
