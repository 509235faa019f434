"""UPerNet segmentation model: each switch changes the architecture as named; gradients flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nationmap.errors import InputError
from nationmap.losses import BCEDiceLoss, FocalDiceLoss, class_weights
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


def test_uses_batchnorm_convs_in_decoder():
    model = _model()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules())
    assert len(model.decoder.ppm.branches) == 4
