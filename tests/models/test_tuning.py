"""``python -m poolops_models.tuning``: recipe variants of the built-in SPP recipes, compared on
validation buckets only (issue 11)."""

import pytest

from poolops_models import tuning
from poolops_models.recipes import MULTISIZE, RECIPES


def test_variants_change_only_what_they_name():
    base = RECIPES["digits-spp"]
    assert tuning.variant("digits", "base", {}).config == base.config
    gap = tuning.variant("digits", "gap head", tuning.VARIANTS["gap head"])
    assert gap.config["head"] == {"type": "gap"} and gap.config["backbone"] == base.config["backbone"]
    low = tuning.variant("digits", "low-res x0.5", tuning.VARIANTS["low-res x0.5"])
    assert low.multisize == {**MULTISIZE, "upscaled": 0.5, "downscaled": 0.2} and low.steps == base.steps
    assert tuning.variant("layout", "2x steps", tuning.VARIANTS["2x steps"]).steps == 2 * RECIPES["layout-spp"].steps
    assert base.config["head"]["type"] == "spp"  # the registry's recipe is left alone


def test_markdown_reports_each_variant_on_validation():
    rows = [{"task": "digits", "variant": "base", "policy": "shorter side into [48, 48]",
             "validation": [0.972, 0.989, 0.991, 0.985, 0.987], "seconds": 12.0}]
    md = tuning.markdown(rows)
    assert "Validation buckets" in md and "| digits | base | shorter side into [48, 48] | 0.972 |" in md
    assert "| 0.972 | 0.019 | 12 |" in md


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        tuning.main(["nope"])
