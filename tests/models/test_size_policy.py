"""models/size_policy.py: the one size policy of the server, the UI and the experiments."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from poolops_models import size_policy as sp
from poolops_models.cards import ModelCard, SizePolicy

P = {"shorter_side": [224, 224]}
LIMITS = ((32, 32), (1024, 1024))


@pytest.mark.parametrize(
    "hw, policy, limits, expected",
    [
        ((300, 451), P, LIMITS, (224, 337)),  # chelsea: 451 * 224 / 300 = 336.75
        ((400, 600), P, LIMITS, (224, 336)),  # coffee
        ((427, 640), P, LIMITS, (224, 336)),  # rocket: 335.7
        ((512, 512), P, LIMITS, (224, 224)),
        ((500, 741), P, LIMITS, (224, 332)),  # 331.97
        ((741, 500), P, LIMITS, (332, 224)),  # transposed
        ((100, 150), P, LIMITS, (224, 336)),  # scaled up
        ((224, 1000), P, LIMITS, (224, 1000)),  # already there: left alone
        ((50, 80), {"shorter_side": [32, 64]}, LIMITS, (50, 80)),  # within [lo, hi]: left alone
        ((20, 80), {"shorter_side": [32, 64]}, LIMITS, (32, 128)),  # up to lo
        ((200, 90), {"shorter_side": [32, 64]}, LIMITS, (142, 64)),  # down to hi: 142.2
        ((3, 5), {"shorter_side": [32, 64]}, None, (32, 53)),  # no limits: 53.3
        ((100, 150), None, LIMITS, (100, 150)),  # no policy: unchanged, unchecked
        ((5000, 5000), None, LIMITS, (5000, 5000)),
    ],
)
def test_target_size(hw, policy, limits, expected):
    assert sp.target_size(*hw, policy, limits) == expected


def test_longer_side_fits_the_card_instead():
    # keeping the aspect with the shorter side at 224 would make the longer 224 * 10 = 2240
    assert sp.target_size(100, 1000, P, LIMITS) == (102, 1024)
    assert sp.target_size(1000, 100, P, LIMITS) == (1024, 102)
    assert sp.target_size(300, 3000, P, LIMITS) == (102, 1024)
    # non-square limits: each side against its own maximum
    assert sp.target_size(400, 400, P, ((8, 8), (100, 1000))) == (100, 100)
    assert sp.target_size(200, 400, P, ((8, 8), (300, 300))) == (150, 300)


@pytest.mark.parametrize("hw", [(1, 5000), (5000, 1), (3, 4000), (40000, 10)])
def test_aspect_extremes_refused_naming_the_sizes(hw):
    with pytest.raises(sp.SizePolicyError) as e:
        sp.target_size(*hw, P, LIMITS)
    msg = str(e.value)
    assert f"{hw[0]}x{hw[1]}" in msg and "32x32 up to 1024x1024" in msg and "shorter side into [224, 224]" in msg


def test_policy_below_the_cards_minimum_scales_up_to_it():
    assert sp.target_size(30, 45, {"shorter_side": [10, 40]}, LIMITS) == (32, 48)
    assert sp.target_size(100, 40, {"shorter_side": [8, 8]}, ((16, 16), (1024, 1024))) == (40, 16)
    with pytest.raises(sp.SizePolicyError, match="100x5"):  # 16 high makes it 320 wide
        sp.target_size(100, 5, {"shorter_side": [8, 8]}, ((16, 16), (200, 200)))


def test_aspect_extremes_that_fit():
    assert sp.target_size(1, 32, {"shorter_side": [8, 8]}, ((8, 8), (1024, 1024))) == (8, 256)
    assert sp.target_size(32, 4096, {"shorter_side": [8, 16]}, ((8, 8), (1024, 1024))) == (8, 1024)
    assert sp.target_size(32, 4100, {"shorter_side": [8, 16]}, ((8, 8), (1024, 1024))) == (8, 1024)  # 7.99 rounds to 8
    assert sp.target_size(1, 1, P, LIMITS) == (224, 224)


def test_describe_and_card_field():
    assert sp.describe(None) == "none"
    assert sp.describe(P) == "shorter side into [224, 224]"
    assert sp.describe(SizePolicy(shorter_side=(16, 64))) == "shorter side into [16, 64]"
    assert sp.as_parameters(SizePolicy(shorter_side=(16, 64))) == {"shorter_side": [16, 64]}
    with pytest.raises(ValueError):
        SizePolicy(shorter_side=(64, 16))
    with pytest.raises(ValueError):
        SizePolicy(shorter_side=(0, 16))
    with pytest.raises(ValueError):
        SizePolicy(shorter_side=(16, 64), longer_side=3)
    base = dict(
        name="m", task="t", labels=["a"], preprocessing={}, backbone={}, head={},
        input={"channels": 1, "min_size": [8, 8], "max_size": [64, 64]}, sha256="0", produced_by="x",
    )
    assert ModelCard(**base).size_policy is None  # absent: no resizing (cards written before the field)
    card = ModelCard(**base, size_policy={"shorter_side": [16, 32]})
    assert sp.target_size(100, 400, card.size_policy, card) == (16, 64)  # 64 is the card's max width
    assert sp.target_size(10, 12, card.size_policy, card.input) == (16, 19)


def test_apply_bilinear_per_channel_like_load_pixels():
    rng = np.random.default_rng(0)
    px = rng.random((30, 45, 3), dtype=np.float32)
    out = sp.apply(px, {"shorter_side": [20, 20]}, ((8, 8), (100, 100)))
    assert out.shape == (20, 30, 3) and out.dtype == np.float32
    for c in range(3):  # Pillow "F" mode, BILINEAR, as service/ui/common.load_pixels
        ref = np.asarray(Image.fromarray(px[..., c], mode="F").resize((30, 20), Image.BILINEAR), np.float32)
        np.testing.assert_array_equal(out[..., c], ref)
    assert sp.apply(px, None, LIMITS) is px  # no policy: the same pixels
    assert sp.apply(px, {"shorter_side": [10, 40]}, ((8, 8), (64, 64))) is px  # within: left alone
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_experiments_feed_registry_models_through_the_same_policy(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from poolops_models import experiments
    from poolops_models.cards import validate

    zoo = Path(__file__).resolve().parents[2] / "models" / "zoo"
    shutil.copytree(zoo / "digits-spp", tmp_path / "digits-spp")
    card = json.loads((tmp_path / "digits-spp" / "card.json").read_text())
    card["size_policy"] = {"shorter_side": [32, 40]}
    (tmp_path / "digits-spp" / "card.json").write_text(json.dumps(card))
    entry = validate(tmp_path / "digits-spp")
    assert entry.available, entry.reason
    rng = np.random.default_rng(0)
    batches = [(rng.random((3, 1, 20, 30), dtype=np.float32), np.array([0, 1, 2])),
               (rng.random((2, 1, 64, 50), dtype=np.float32), np.array([3, 4]))]
    resized = list(experiments.policy_batches(batches, entry.card.size_policy, entry.card))
    assert [x.shape for x, _ in resized] == [(3, 1, 32, 48), (2, 1, 51, 40)]
    for (x, _), (r, _) in zip(batches, resized):
        for i in range(len(x)):
            want = sp.apply(x[i].transpose(1, 2, 0), {"shorter_side": [32, 40]}, LIMITS).transpose(2, 0, 1)
            np.testing.assert_array_equal(r[i], want)
    assert all(a is b for (a, _), (b, _) in zip(batches, experiments.policy_batches(batches, None)))
    assert experiments.registry_accuracy(entry, batches) == experiments._onnx_accuracy(entry.onnx_path, resized)
    assert experiments.registry_accuracy(entry, batches, resize=False) == experiments._onnx_accuracy(
        entry.onnx_path, batches)
