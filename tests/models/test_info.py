"""Parameter and FLOP counts: against published references and against a real (non-meta) count."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from nationmap.cli.main import app
from nationmap.models.info import HEADS, count_parameters, forward_flops, model_cost
from nationmap.models.presets import get_preset
from nationmap.models.swin import SwinEncoder
from nationmap.models.upernet import SegmentationConfig, SegmentationModel

runner = CliRunner()


def test_swin_b_encoder_flops_match_the_published_count():
    # Swin-B: 15.4 GMACs at 224 x 224 (Liu et al. 2021, Table 1); window attention is ~linear in area.
    cost = model_cost("swin-b", "encoder")
    gmacs = cost.flops_per_patch / 2e9
    assert gmacs == pytest.approx(15.4 * (256 / 224) ** 2, rel=0.03)
    assert cost.parameters == pytest.approx(86.7e6, rel=0.01)  # 87.8 M with the 3-channel stem and 1000-class head


def test_uppernet_swin_t_flops_match_the_published_count():
    # UPerNet + Swin-T: 945 GFLOPs (multiply-adds) at 512 x 2048 (Liu et al. 2021, Table 3) = 16 patches of 256 x 256.
    cost = model_cost("swin-t", "lulc-baseline")
    assert cost.flops_per_patch / 2e9 * 16 == pytest.approx(945, rel=0.03)


def test_meta_count_equals_a_real_count():
    cost = model_cost("tiny", "lulc")
    model = SegmentationModel(SegmentationConfig.from_preset("tiny", "lulc")).eval()
    assert cost.parameters == count_parameters(model)
    assert cost.flops_per_patch == forward_flops(model, torch.zeros(2, 1, 256, 256)) / 2


def test_refinements_cost_more_than_the_baseline():
    base, full = model_cost("tiny", "lulc-baseline"), model_cost("tiny", "lulc")
    assert full.flops_per_patch > base.flops_per_patch and full.parameters > base.parameters


def test_models_info_cli_json():
    result = runner.invoke(app, ["models", "info", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["head"] for r in rows] == list(HEADS)
    enc = next(r for r in rows if r["head"] == "encoder")
    assert enc["parameters"] == count_parameters(SwinEncoder(get_preset("tiny").encoder))


def test_models_info_cli_table_and_errors():
    result = runner.invoke(app, ["models", "info", "swin-b", "--head", "lulc"])
    assert result.exit_code == 0 and "124.57" in result.output
    for args, message in [(["models", "info", "swin-z"], "unknown model preset"),
                          (["models", "info", "tiny", "--head", "roads"], "unknown head")]:
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output
