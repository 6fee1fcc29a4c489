"""The UI's handlers against a real engine (no browser): every op from the registry in the
Playground and Compare, the max and avg worked examples with indices and backward, the SPP explorer's
bins and vector length, classification through the batcher, the model cards, and errors
that come back as messages (never exceptions)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import poolops.registry as op_registry
from poolops_models.data import digits
from poolops_models.cards import load_registry
from poolops.registry import get_op, list_ops
from poolops.shapes import adaptive_bins
from poolops_service.config import Settings
from poolops_service.engine import Engine
from poolops_service.engine.models import top_k
from poolops_service.ui import build_ui, cards, classify, common, compare, playground, render, spp_explorer, uploads

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def engine() -> Engine:
    e = Engine(Settings(models_dir=ZOO, build_missing=False, warmup_sizes=[], threads=1))
    e.load()
    assert e.phase == "ready", e.failure
    yield e
    e.close()


def save_png(path: Path, a: np.ndarray) -> str:
    Image.fromarray(a).save(path)
    return str(path)


@pytest.fixture
def gray_png(tmp_path) -> str:
    a = (np.random.default_rng(0).random((40, 30)) * 255).astype(np.uint8)
    return save_png(tmp_path / "gray.png", a)


@pytest.fixture
def rgb_png(tmp_path) -> str:
    a = (np.random.default_rng(1).random((21, 34, 3)) * 255).astype(np.uint8)
    return save_png(tmp_path / "rgb.png", a)


# ---------------------------------------------------------------- the Blocks


def test_build_ui_has_every_tab_and_its_own_temp_dir(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # restored afterwards: build_ui sets it process-wide
    settings = Settings(models_dir=ZOO, build_missing=False, warmup_sizes=[], gradio_temp_dir=tmp_path / "gr")
    demo = build_ui(engine, settings)
    assert isinstance(demo, gr.Blocks)
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Playground", "Compare", "SPP explorer", "Classify", "Models"]
    assert os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "gr") and (tmp_path / "gr").is_dir()
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and demo.analytics_enabled is False
    # the op dropdown offers every registered op
    dropdowns = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.elem_id == "pg-op"]
    assert [v for _, v in dropdowns[0].choices] == list_ops()


def test_every_image_input_hands_on_an_undecoded_file(engine, tmp_path, monkeypatch):
    """Gradio would decode a data: URL itself; the UI's inputs write its bytes as they are
    (the handlers' decoder checks the header first) and take only Gradio's own uploads."""
    from gradio.data_classes import ImageData

    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    settings = Settings(models_dir=ZOO, build_missing=False, warmup_sizes=[], gradio_temp_dir=tmp_path / "gr")
    demo = build_ui(engine, settings)
    every = [b for b in demo.blocks.values() if isinstance(b, gr.Image)]
    images = [b for b in every if b.interactive is not False]  # the others only show drawings
    assert sorted(b.elem_id for b in images) == ["cls-image", "cmp-image", "pg-image", "spp-image"]
    inputs = {id(c) for fn in demo.fns.values() for c in fn.inputs}
    assert not [b.elem_id for b in every if b.interactive is False and id(b) in inputs]
    raw = b"not even an image: never decoded here"
    for image in images:
        assert image.type == "filepath" and image.image_mode is None
        path = image.preprocess(ImageData(url="data:image/png;base64," + base64.b64encode(raw).decode()))
        assert Path(path).read_bytes() == raw and Path(path).parent == tmp_path / "gr" / uploads.INLINE
        uploads.handled(path)
        assert not Path(path).exists()
        with pytest.raises(gr.Error, match="as an upload"):
            image.preprocess(ImageData(path=str(ZOO / "digits-spp" / "card.json")))
    upload = tmp_path / "gr" / "abc" / "a.png"
    upload.parent.mkdir()
    upload.write_bytes(raw)
    assert images[0].preprocess(ImageData(path=str(upload))) == str(upload)
    uploads.handled(str(upload))  # an upload stays for reruns
    assert upload.exists()


def test_no_torch_in_the_ui_modules():
    # the serving process never imports torch: the UI's modules do not name it
    for f in (Path(common.__file__).parent).glob("*.py"):
        src = f.read_text()
        assert "import torch" not in src and "from torch" not in src, f


# ---------------------------------------------------------------- Playground


def test_op_info_for_every_op():
    for name in list_ops():
        params, doc, schema = playground.op_info(name)
        assert json.loads(params) == common.default_params(name)
        assert get_op(name).params(**json.loads(params))  # the defaults parse back
        assert doc.startswith(f"### {name}") and schema["type"] == "object"


def test_max_worked_example_numbers_indices_and_backward(engine):
    r = run(playground.run_playground(engine, "max", '{"kernel": 2}', "matrix", None, "1 3\n2 2"))
    assert r.ok, r.status
    assert r.shape == (1, 1, 1, 1) and "y: [1, 1, 1, 1], indices: [1, 1, 1, 1]" in r.status
    assert r.outputs["y"].item() == 3 and r.outputs["indices"].item() == 1
    np.testing.assert_array_equal(r.outputs["grad_input"][0, 0], [[0, 1], [0, 0]])
    assert "CPUExecutionProvider" in r.status or "CUDAExecutionProvider" in r.status
    assert "forward" in r.status and "backward" in r.status
    # small input: the numbers as tables
    assert "**y[0, 0]**" in r.numbers and "**indices[0, 0]**" in r.numbers and "**grad_input[0, 0]**" in r.numbers
    assert "| 0 | 1 |" in r.numbers
    assert len(r.gallery) == 1 and len(r.grad_gallery) == 1


def test_avg_worked_example_backward_spreads_evenly(engine):
    r = run(playground.run_playground(engine, "avg", "{}", "matrix", None, "1 3; 2 2"))
    assert r.ok and r.outputs["y"].item() == 2
    np.testing.assert_allclose(r.outputs["grad_input"][0, 0], [[0.25, 0.25], [0.25, 0.25]])


@pytest.mark.parametrize("name", list_ops())
def test_every_op_runs_on_an_image_and_a_matrix(engine, name, rgb_png):
    spec = get_op(name)
    sd = spec.spatial_dims
    for source in ("image", "matrix"):
        r = run(playground.run_playground(engine, name, "", source, rgb_png, common.DEFAULT_MATRIX, "rgb", 128, True))
        if common.missing_inputs(spec):
            assert not r.ok and "needs inputs" in r.status
            continue
        if sd == 3 and source == "matrix" and not r.ok:  # one channel is a depth of 1 (windows need 2)
            assert "kernel" in r.status and "axis D" in r.status, r.status
            continue
        if name == "rotation_invariant":  # 3 or 1 channels are not groups of 8 orientations
            assert not r.ok and "orientations" in r.status, r.status
            continue
        assert r.ok, r.status
        if sd != 2:
            assert f"A {sd}-D op: " in r.status
        y = r.outputs["y"]
        assert r.gallery and all(isinstance(im, Image.Image) for im, _ in r.gallery)
        assert f"y: {list(y.shape)}" in r.status
        if spec.onnx_backward is not None and not spec.inputs[1:]:
            x_shape = (1, 3, 21, 34) if source == "image" else (1, 1, 8, 8)
            assert r.grad_gallery and r.outputs["grad_input"].shape == common.to_op_rank(np.zeros(x_shape), sd)[0].shape
        # numbers only for small inputs
        assert bool(r.numbers) == (source == "matrix")


def test_op_without_served_backward_gets_a_note(engine, monkeypatch):
    spec = get_op("avg")
    monkeypatch.setitem(op_registry._REGISTRY, "avg", dataclasses.replace(spec, onnx_backward=None))
    r = run(playground.run_playground(engine, "avg", "", "matrix", None, "1 3\n2 2"))
    assert r.ok, r.status
    assert "Backward is not served for `avg`" in r.status and not r.grad_gallery
    assert "Backward is not served" in playground.op_info("avg")[1]


def test_extra_inputs_come_from_examples_or_are_named(engine, monkeypatch):
    spp = get_op("spp")
    # a required input with an example generator: generated (seed 0), and said so
    monkeypatch.setitem(
        op_registry._REGISTRY, "spp", dataclasses.replace(spp, inputs=("x", "valid"), optional_inputs=())
    )
    assert "example valid" in common.op_label("spp")
    r = run(playground.run_playground(engine, "spp", "", "matrix", None, common.DEFAULT_MATRIX))
    assert r.ok, r.status
    assert "input `valid` [1, 2] is an example" in r.status and "x alone" in r.status
    # a required input the UI cannot make: shown as "needs inputs", and running says so
    monkeypatch.setitem(
        op_registry._REGISTRY, "spp", dataclasses.replace(spp, inputs=("x", "mystery"), optional_inputs=())
    )
    assert "needs inputs: mystery" in common.op_label("spp")
    r = run(playground.run_playground(engine, "spp", "", "matrix", None, common.DEFAULT_MATRIX))
    assert not r.ok and "mystery" in r.status and "/v1/ops/spp" in r.status


@pytest.mark.parametrize(
    "args, message",
    [
        (("max", '{"kernel": ', "matrix", None, "1 2\n3 4"), "not valid JSON"),
        (("max", "[1, 2]", "matrix", None, "1 2\n3 4"), "JSON object"),
        (("max", '{"kernal": 2}', "matrix", None, "1 2\n3 4"), "kernal"),
        (("max", '{"kernel": 5}', "matrix", None, "1 2\n3 4"), "kernel"),
        (("max", "", "matrix", None, "1 2\n3"), "different lengths"),
        (("max", "", "matrix", None, "1 x"), "not a number"),
        (("max", "", "matrix", None, ""), "empty"),
        (("max", "", "image", None, ""), "no image uploaded"),
        (("stochastic", "", "matrix", None, "1 -2\n3 4"), "negative"),
        (("nope", "", "matrix", None, "1"), "unknown op"),
    ],
)
def test_bad_input_is_a_message(engine, args, message):
    r = run(playground.run_playground(engine, *args))
    assert not r.ok and r.status.startswith("**Error:**") and message in r.status
    assert "Traceback" not in r.status


def test_bad_image_file_is_a_message(engine, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = run(playground.run_playground(engine, "max", "", "image", str(bad), ""))
    assert not r.ok and "not an image format" in r.status


def test_image_sources(tmp_path, rgb_png):
    # RGB as grey or as 3 channels; shrinking keeps the aspect; 16-bit and RGBA decode
    assert common.make_source("image", rgb_png, "", "gray", 10**6).x.shape == (1, 1, 21, 34)
    assert common.make_source("image", rgb_png, "", "rgb", 10**6).x.shape == (1, 3, 21, 34)
    assert common.make_source("image", rgb_png, "", "rgb", 10**6, max_side=17).x.shape == (1, 3, 10, 17)
    p16 = tmp_path / "a16.png"
    Image.fromarray(np.full((5, 6), 65535, np.uint16)).save(p16)
    x = common.make_source("image", str(p16), "", "gray", 10**6).x
    assert x.shape == (1, 1, 5, 6) and np.allclose(x, 1.0)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: flattened onto black
    p = save_png(tmp_path / "rgba.png", rgba)
    assert np.allclose(common.make_source("image", p, "", "rgb", 10**6).x, 0)
    with pytest.raises(Exception, match="pixels"):
        common.make_source("image", rgb_png, "", "gray", 100)  # the pixel limit, before decoding


def test_matrix_forms():
    assert common.parse_matrix("1 3\n2 2").shape == (1, 1, 2, 2)
    assert common.parse_matrix("1,3;2,2").tolist() == [[[[1, 3], [2, 2]]]]
    assert common.parse_matrix("[[[1, 2]], [[3, 4]]]").shape == (1, 2, 1, 2)
    assert common.parse_matrix("[[[[1]]], [[[2]]]]").shape == (2, 1, 1, 1)


# ---------------------------------------------------------------- rendering


def test_render_planes():
    im = render.plane_image(np.array([[0.0, 1.0], [np.nan, np.inf]]))
    a = np.asarray(im)
    f = a.shape[0] // 2
    assert a.shape[0] == a.shape[1] >= 128  # enlarged, square blocks
    assert tuple(a[0, 0]) == (0, 0, 0) and tuple(a[0, -1]) == (255, 255, 255)
    assert tuple(a[f, 0]) == render.NAN_RGB and tuple(a[-1, -1]) == (255, 255, 255)
    assert tuple(np.asarray(render.plane_image(np.full((3, 3), 7.0)))[0, 0]) == (128, 128, 128)  # constant: mid-grey
    # a vector is a strip with a visible height
    strip = np.asarray(render.plane_image(np.arange(21.0)))
    assert strip.shape[0] >= 16 and strip.shape[1] >= 21
    # heat maps: black at 0 for non-negative gradients, white at 0 for signed ones
    assert tuple(np.asarray(render.heatmap(np.array([[0.0, 2.0]])))[0, 0]) == (0, 0, 0)
    signed = np.asarray(render.heatmap(np.array([[-1.0, 0.0, 1.0]])))
    assert tuple(signed[0, signed.shape[1] // 2]) == (255, 255, 255)
    assert signed[0, 0, 2] > signed[0, 0, 0] and signed[0, -1, 0] > signed[0, -1, 2]  # blue, red
    assert [i for i, _ in render.planes(np.zeros((2, 5, 3, 3)), 8)][:6] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (1, 0),
    ]
    assert render.table(np.array([[1.0, 0.5], [np.nan, -np.inf]])) == [["1", "0.5"], ["nan", "-inf"]]


# ---------------------------------------------------------------- Compare


def test_compare_every_op_side_by_side(engine, gray_png):
    names = list_ops()
    r = run(compare.run_compare(engine, names, '{"max": {"kernel": 3}}', "image", gray_png, ""))
    assert r.ok, r.status
    assert [row[0] for row in r.rows] == names
    by_op = {row[0]: row for row in r.rows}
    assert by_op["max"][2] == "[1, 1, 13, 10]" and by_op["max"][1] == '{"kernel": 3}'
    assert by_op["spp"][2] == "[1, 21]"
    assert by_op["global_avg"][2] == "[1, 1, 1, 1]"
    assert any(cap.startswith("max [1, 1, 13, 10]") for _, cap in r.gallery)
    # 1-D ops pool each row as a signal; gray 3-D ops see a depth of 1 (global ones run)
    assert by_op["max1d"][2] == "[1, 40, 15]" and by_op["global_max3d"][2] == "[1, 1, 1, 1, 1]"
    assert "axis D" in by_op["max3d"][-1]


def test_compare_one_failing_op_is_its_row(engine):
    r = run(compare.run_compare(engine, ["max", "avg"], '{"max": {"kernel": 9}}', "matrix", None, "1 2\n3 4"))
    assert r.ok and "1 of 2 ops" in r.status
    assert r.rows[0][2] == "-" and "kernel" in r.rows[0][-1] and r.rows[1][2] == "[1, 1, 1, 1]"
    assert r.rows[1][3] == "2.5"  # the values of a small output
    assert not run(compare.run_compare(engine, [], "", "matrix", None, "1")).ok
    bad = run(compare.run_compare(engine, ["max"], '{"nope": {}}', "matrix", None, "1"))
    assert not bad.ok and "nope" in bad.status


# ---------------------------------------------------------------- SPP explorer


@pytest.mark.parametrize("rule", ["adaptive", "sppnet"])
def test_spp_vector_length_at_any_size(engine, rgb_png, rule):
    r = run(spp_explorer.explore(engine, None, 7, 10, "1,2,4", rule))
    assert r.ok, r.status
    assert r.length == 21 and "Vector length 21" in r.status
    assert {row[1] for row in r.sizes} == {"[1, 21]"} and len(r.sizes) == 4
    assert len(r.gallery) == 3 and "level 4: 4x4 bins" in r.gallery[2][1]
    rgb = run(spp_explorer.explore(engine, rgb_png, 0, 0, "1, 3", rule, "avg", "rgb"))
    assert rgb.ok and rgb.length == 3 * (1 + 9) and rgb.sizes[0][:2] == ["21x34", "[1, 30]"]


def test_spp_bins_drawn_and_described():
    # adaptive bins overlap where 7 is not a multiple of 2, SPP-net leaves rows unused
    assert spp_explorer.describe(7, 2, "adaptive", "rows") == "[0,4) [3,7) (overlapping)"
    assert spp_explorer.bins_of(7, 2, "adaptive") == adaptive_bins(7, 2) == [(0, 4), (3, 7)]
    assert "rows 5..6 unused" in spp_explorer.describe(7, 4, "sppnet", "rows")
    assert "repeated" in spp_explorer.describe(2, 4, "sppnet", "rows")
    im = spp_explorer.draw_level(spp_explorer.canvas(7, 10), 4, "sppnet")
    assert max(im.size) == spp_explorer.DRAW and im.size[0] > im.size[1]
    a = np.asarray(im).astype(int)
    # the unused bottom rows are greyed: the last row has no bin colour
    last = a[-2, 5:-5]
    assert np.all(np.abs(last[:, 0] - last[:, 1]) < 40)


@pytest.mark.parametrize("levels, message", [("1,x", "whole numbers"), ("", "at least one"), ("0,2", "between 1")])
def test_spp_bad_levels(engine, levels, message):
    r = run(spp_explorer.explore(engine, None, 7, 10, levels))
    assert not r.ok and message in r.status


# ---------------------------------------------------------------- Classify


def test_classify_held_out_digits_through_the_batcher(engine, tmp_path):
    _, test_ids = digits.split()
    x, y = digits.render(test_ids[:10], (48, 40), np.random.default_rng(0))
    right = 0
    batches_before = engine.batcher("digits-spp").batches
    for i in range(10):
        path = save_png(tmp_path / f"d{i}.png", np.round(x[i, 0] * 255).astype(np.uint8))
        r = run(classify.classify(engine, "digits-spp", path, 3))
        assert r.ok, r.status
        assert len(r.label) == 3 and abs(sum(r.label.values()) - sum(t["probability"] for t in r.top)) < 1e-9
        fed = engine.runner("digits-spp").target_size(48, 40, True)  # the card's size policy
        assert f"input size: {fed[0]}x{fed[1]} (HxW)" in r.status and "latency" in r.status and "provider" in r.status
        right += r.top[0]["label"] == str(y[i])
        # the same numbers as the model run directly
        runner = engine.runner("digits-spp")
        chw = runner.preprocess(common.load_pixels(path, 1, 10**6))
        direct = top_k(runner.card, runner.run_batch([chw])[0].logits, 3)
        assert [t["index"] for t in direct] == [t["index"] for t in r.top]
        np.testing.assert_allclose([t["probability"] for t in direct], [t["probability"] for t in r.top], atol=1e-6)
    assert right >= 7
    assert engine.batcher("digits-spp").batches >= batches_before + 10


def test_classify_errors_are_messages(engine, tmp_path, gray_png):
    tiny = save_png(tmp_path / "tiny.png", np.zeros((4, 4), np.uint8))
    # below the card's smallest size as it is; the card's size policy scales it up instead
    assert "resize the image" in run(classify.classify(engine, "digits-spp", tiny, 3, resize=False)).status
    assert run(classify.classify(engine, "digits-spp", tiny, 3)).ok
    assert "unknown model" in run(classify.classify(engine, "nope", gray_png, 3)).status
    assert "upload an image" in run(classify.classify(engine, "digits-spp", None, 3)).status
    assert "choose a model" in run(classify.classify(engine, None, gray_png, 3)).status


def test_model_choices(engine):
    names, default, note = classify.model_choices(engine)
    available = [n for n in engine.registry if engine.model_status(n)["available"]]
    assert names == available
    assert default == (classify.PHOTO_MODEL if classify.PHOTO_MODEL in available else available[0])
    for n in engine.registry:
        if n not in available:
            assert n in note
    # before the engine has loaded: no models yet, and why
    cold = Engine(Settings(models_dir=ZOO, build_missing=False, warmup_sizes=[]))
    assert classify.model_choices(cold) == (
        [],
        None,
        "No models yet (the engine is starting); reload the page when the service is ready.",
    )
    assert "the engine is starting" in cards.cards_markdown(cold)


# ---------------------------------------------------------------- Models


def test_cards_show_every_model_with_metrics_and_status(engine):
    md = cards.cards_markdown(engine)
    for name, entry in engine.registry.items():
        assert f"### {name}" in md
        if entry.card:
            for m in entry.card.metrics:
                assert m.name in md and m.data in md
    assert "padding invariant: yes" in md and "padding invariant: no" in md
    assert "| metric | value | measured on |" in md


def test_models_tab_shows_the_accuracy_by_size_plot_and_each_size_policy(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    settings = Settings(models_dir=ZOO, build_missing=False, warmup_sizes=[], gradio_temp_dir=tmp_path / "gr")
    demo = build_ui(engine, settings)
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.HTML) and b.elem_id == "models-accuracy-by-size"]
    assert cards.ACCURACY_PLOT.is_file() and len(plots) == 1  # the committed PNG (poolops experiments)
    png = base64.b64encode(cards.ACCURACY_PLOT.read_bytes()).decode()
    assert f"data:image/png;base64,{png}" in plots[0].value and "poolops experiments --buckets-only" in plots[0].value
    md = cards.cards_markdown(engine)
    for name, entry in engine.registry.items():
        if entry.card and entry.card.size_policy:
            lo, hi = entry.card.size_policy.shorter_side
            assert f"shorter side resized into [{lo}, {hi}] px" in cards.card_markdown(engine, name)
    assert "- size policy: " in md


def test_broken_model_card_shows_the_reason(tmp_path):
    shutil.copytree(ZOO / "digits-spp", tmp_path / "digits-spp")
    (tmp_path / "digits-spp" / "model.onnx").write_bytes(b"corrupt")
    e = Engine(Settings(models_dir=tmp_path, build_missing=False, warmup_sizes=[]))
    e.registry = load_registry(tmp_path)
    md = cards.card_markdown(e, "digits-spp")
    assert "**unavailable**" in md and "sha256" in md
    names, default, note = classify.model_choices(e)
    assert names == [] and default is None and "digits-spp" in note


# ---------------------------------------------------------------- the sources' examples, seeing the op


def test_cell_view_shows_the_window_and_the_argmax(engine):
    r = run(playground.run_playground(engine, "max", '{"kernel": 2}', "matrix", None, "1 3 0 0\n2 2 0 9"))
    assert r.ok and r.y_table["headers"] == ["y[0, 0]", "j=0", "j=1"] and r.y_table["data"] == [["i=0", "3", "9"]]
    assert "argmax x[0, 1] = 3" in r.windows_note and "rows 0-1, columns 0-1" in r.windows_note
    img, note = run(playground.cell_view(engine, r.state, 0, 1))
    assert img is not None and "argmax x[1, 3] = 9" in note and "columns 2-3" in note


def test_stochastic_shows_window_probabilities_and_train_samples(engine):
    r = run(playground.run_playground(engine, "stochastic", '{"kernel": 2, "mode": "train"}', "matrix", None, "1 2\n3 4"))
    assert r.ok and "0.1, 0.2, 0.3, 0.4" in r.stochastic
    train = r.stochastic.split("Train mode")[1]
    samples = [line.split("|")[2].strip() for line in train.splitlines() if line.startswith("| ") and "seed" not in line]
    assert len(samples) == playground.SAMPLE_SEEDS and set(samples) <= {"1", "2", "3", "4"}


def test_classify_examples_and_size_accuracy(engine):
    keys = [e.key for e in classify.example_images()]
    assert "chelsea" in keys and "coffee" in keys and sum(k.startswith("digit-") for k in keys) >= 3
    digit = next(e for e in classify.example_images() if e.key.startswith("digit-"))
    r = run(classify.classify(engine, "digits-spp", str(digit.path), 3))
    assert r.ok and "Accuracy by size, from the model's card" in r.status and "(this image)" in r.status
    api = run(engine.infer_images("digits-spp", [engine.runner("digits-spp").preprocess(
        common.load_pixels(digit.path, 1, 1 << 24), True)]))[0]
    assert r.top[0]["label"] == top_k(engine.runner("digits-spp").card, api.logits, 1)[0]["label"]
