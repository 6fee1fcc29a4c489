"""docs/ops.md is generated from the registry and current."""

from __future__ import annotations

from pathlib import Path

import poolops
from poolops.reference import markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "ops.md"


def test_committed_ops_reference_is_current():
    assert DOC.read_text() == markdown(), "regenerate it: poolops ops --markdown > docs/ops.md"


def test_every_op_and_parameter_is_in_the_reference():
    text = markdown()
    for name in poolops.list_ops():
        assert f"\n## {name}\n" in text
        for p in poolops.get_op(name).params.model_fields:
            assert f"| `{p}` |" in text, (name, p)
