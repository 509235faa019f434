"""Model configs from JSON (bundles, checkpoints) by the one rule: unknown keys and wrong types
are refused with one line, never dropped or passed on to the model."""

from __future__ import annotations

import json

import pytest

from nationmap.errors import InputError
from nationmap.models import SegmentationConfig
from nationmap.models.presets import PRESETS, EncoderConfig
from nationmap.models.pretrain import MixMAEConfig, SimMIMConfig


@pytest.mark.parametrize("cls", [SegmentationConfig, MixMAEConfig, SimMIMConfig])
def test_configs_round_trip_through_json(cls):
    cfg = cls.from_preset("tiny")
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def _seg_dict() -> dict:
    return json.loads(json.dumps(SegmentationConfig.from_preset("tiny", "lulc").to_dict()))


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(head_kind="fancy"), ("unknown", "'head_kind'")),
    (lambda d: d["encoder"].update(depth=[2]), ("unknown", "'depth'", "'depths'")),
    (lambda d: d.update(dropout=float("nan")), ("dropout", "finite")),
    (lambda d: d.update(highres="yes"), ("highres", "true or false")),
    (lambda d: d["encoder"].update(depths=[2, "x", 2, 2]), ("depths[1]", "an integer")),
    (lambda d: d.update(encoder=[1, 2]), ("encoder", "table")),
    (lambda d: d.update(pool_scales=3), ("pool_scales", "a list")),
], ids=["unknown-key", "unknown-encoder-key", "nan", "bool", "tuple-item", "nested", "tuple"])
def test_bad_model_config_is_one_clear_refusal(change, words):
    d = _seg_dict()
    change(d)
    with pytest.raises(InputError) as info:
        SegmentationConfig.from_dict(d)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_encoder_config_checks_its_fields_when_built_in_code():
    with pytest.raises(InputError, match="drop_path_rate must be a finite number"):
        EncoderConfig(drop_path_rate=float("nan"))
    assert EncoderConfig(depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], embed_dim=24).depths == (2, 2, 2, 2)
    assert all(isinstance(p.encoder.depths, tuple) for p in PRESETS.values())
