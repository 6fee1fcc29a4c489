"""The request codecs on their own: an image op request's form fields, and the channel
choice (grey or RGB) from the image's mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from poolops_service.codecs import forms, images
from poolops_service.engine.errors import BadInput


def _image(mode: str, size=(5, 3)) -> Image.Image:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="TIFF" if mode in ("I;16", "F", "CMYK") else "PNG")
    return images.open_image(buf.getvalue(), 10_000)


def test_image_op_form_reads_and_checks_each_field():
    f = forms.image_op_form(
        {"color": "rgb", "params": '{"kernel": 2}', "return_indices": "True", "backward": "false"}, [("a.png", b"x")]
    )
    assert (f.what, f.data, f.color, f.params, f.return_indices, f.backward) == (
        "image a.png", b"x", "rgb", {"kernel": 2}, True, False
    )
    default = forms.image_op_form({}, [(None, b"x")])
    assert (default.what, default.color, default.params, default.return_indices) == ("image", "auto", {}, False)


@pytest.mark.parametrize(
    "form, uploads, words",
    [
        ({}, [], "exactly one file"),
        ({}, [("a", b"x"), ("b", b"y")], "exactly one file"),
        ({"color": "cmyk"}, [("a", b"x")], "color must be auto, gray or rgb"),
        ({"params": "[1]"}, [("a", b"x")], "'params' must be a JSON object"),
        ({"params": "{"}, [("a", b"x")], "'params' must be a JSON object"),
        ({"backward": "yes"}, [("a", b"x")], "'backward' must be true or false"),
    ],
)
def test_bad_forms_name_the_field(form, uploads, words):
    with pytest.raises(BadInput, match=words):
        forms.image_op_form(form, uploads)


@pytest.mark.parametrize(
    "mode, auto", [("L", 1), ("LA", 1), ("1", 1), ("I;16", 1), ("F", 1), ("RGB", 3), ("RGBA", 3), ("P", 3)]
)
def test_channels_follow_the_mode_that_decoding_uses(mode, auto):
    im = _image(mode)
    assert images.channels_for(im, "auto") == auto
    assert images.channels_for(im, "gray") == 1 and images.channels_for(im, "rgb") == 3
    x = images.to_nchw(im, auto)
    assert x.shape == (1, auto, 3, 5) and x.dtype == np.float32
