"""Model runner: one registered model's session, its preprocessing and batched inference.

Images of one size are stacked; images of different sizes are zero-padded to their
group's largest H and W with each one's ``valid`` (height, width) when the model's card
declares ``padding_invariant`` (its graph then gives exactly the one-by-one results), and
run in groups of equal size otherwise. Groups are bounded: padding at most doubles a
group's pixels (an image of an odd size runs alone) and a group's padded pixels stay
within ``max_batch_pixels``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from poolops_models import size_policy
from poolops_models.cards import ModelCard, RegisteredModel
from poolops.inputs import check_valid
from poolops.params import ParamError
from poolops_service.engine.errors import BadInput
from poolops_service.engine.sessions import RunControl, Session, make_session


# Batches up to this many pixels reuse the session's memory arena (fast); larger ones hand
# what they added back to the OS afterwards (a 1024x1024 image can need 300 MB).
ARENA_KEEP_PIXELS = 512 * 512


class Padded:
    """An image ``x`` [C, H, W] of which only the top-left ``valid`` (height, width) counts
    (the rest is zero padding): a padding-invariant model's input as an OIP client sent it,
    batched like any image and run with its own ``valid``."""

    __slots__ = ("x", "valid")

    def __init__(self, x: np.ndarray, valid: tuple[int, int]):
        self.x = x
        self.valid = valid

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape


def _image(item: "np.ndarray | Padded") -> tuple[np.ndarray, tuple[int, int]]:
    return (item.x, item.valid) if isinstance(item, Padded) else (item, item.shape[1:])


@dataclass
class Output:
    """One image's result: ``logits`` [L] and ``embedding`` [D] (None for a model whose
    card lists no ``embedding`` output, e.g. one from ``poolops export-torch``)."""

    logits: np.ndarray
    embedding: np.ndarray | None


def normalisation(card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel applied to [0, 1] pixels; identity when the card has none."""
    c = card.input.channels
    mean = np.asarray(card.preprocessing.get("mean", [0.0] * c), np.float32).reshape(c, 1, 1)
    std = np.asarray(card.preprocessing.get("std", [1.0] * c), np.float32).reshape(c, 1, 1)
    return mean, std


def _to_unit(v):
    # "F" pixel * (1/255) in double, rounded to float32: for each of the 256 values of a byte
    # exactly float32(v) / float32(255), to_pixels' division (tests/service/test_preprocess_exact.py)
    return v * (1 / 255.0)


def to_input(
    decoded: "Image.Image | np.ndarray", h2: int, w2: int, mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> np.ndarray:
    """A decoded image -> the model's input [C, h2, w2] float32: resized to ``h2`` x ``w2``
    (``size_policy.resize_band`` per channel) and normalised, ``(x - mean) / std``.

    Args:
        decoded: what ``codecs.images.to_image`` gives: an 8-bit "L" or "RGB" image, read
            as pixel / 255; or float32 pixels [H, W, C] in [0, 1].
        h2, w2: the size fed to the model.
        mean, std: float32 [C, 1, 1]; None (or all 0, all 1) for none.

    Bit for bit ``(transpose(size_policy.resize(to_pixels(...), h2, w2)) - mean) / std``, in
    one buffer: the bands are resized straight into their channel of the output and
    normalised there.
    """
    if isinstance(decoded, np.ndarray):
        h, w, c = decoded.shape
    else:
        (w, h), c = decoded.size, len(decoded.getbands())
    out = np.empty((c, h2, w2), np.float32)
    if (h, w) == (h2, w2):
        if isinstance(decoded, np.ndarray):
            np.copyto(out, decoded.transpose(2, 0, 1))
        else:
            a = np.asarray(decoded)
            np.divide(a[None] if a.ndim == 2 else a.transpose(2, 0, 1), np.float32(255.0), out=out, dtype=np.float32)
    else:
        if isinstance(decoded, np.ndarray):
            bands = [Image.fromarray(np.ascontiguousarray(decoded[..., i], np.float32)) for i in range(c)]
        else:
            bands = [b.convert("F").point(_to_unit) for b in (decoded.split() if c > 1 else (decoded,))]
        for i, band in enumerate(bands):
            out[i].reshape(-1)[:] = np.frombuffer(size_policy.resize_band(band, h2, w2).tobytes(), np.float32)
    # x - 0 and x / 1 are x exactly: skipped
    if mean is not None and mean.any():
        np.subtract(out, mean, out=out)
    if std is not None and (std != 1).any():
        np.divide(out, std, out=out)
    return out


class ModelRunner:
    """Runs one model: ``preprocess`` (HWC [0, 1] -> CHW) and ``run_batch`` (no web code)."""

    def __init__(self, entry: RegisteredModel, providers: list[str], threads: int, max_batch_pixels: int = 1 << 22):
        self.entry = entry
        self.max_batch_pixels = max_batch_pixels
        self.card: ModelCard = entry.card
        self.session: Session = make_session(entry.onnx_path, providers, threads)
        self.mean, self.std = normalisation(self.card)
        # what to_input applies: None where the card's normalisation is the identity
        self._norm = (self.mean if self.mean.any() else None, self.std if (self.std != 1).any() else None)
        self.padding_invariant = self.card.padding_invariant
        self.batcher = None  # the engine's Batcher for this runner, made on first use

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def provider(self) -> str:
        return self.session.provider

    def check_size(self, h: int, w: int) -> None:
        lo, hi = self.card.input.min_size, self.card.input.max_size
        if h < lo[0] or w < lo[1] or h > hi[0] or w > hi[1]:
            raise BadInput(
                f"image is {h}x{w} (HxW); model {self.name!r} takes {lo[0]}x{lo[1]} up to {hi[0]}x{hi[1]}: "
                "resize the image into that range",
                model=self.name,
            )

    def policy(self, resize: bool = True):
        """The size policy applied: the card's (None when it has none), or None when ``resize`` is off."""
        return self.card.size_policy if resize else None

    def describe_policy(self, resize: bool = True) -> str:
        """``"shorter side into [lo, hi]"`` or ``"none"``: what each answer reports."""
        return size_policy.describe(self.policy(resize))

    def target_size(self, h: int, w: int, resize: bool = True) -> tuple[int, int]:
        """The (H, W) an ``h`` x ``w`` image is fed at (the card's size policy unless ``resize``
        is off), checked against the card's limits: ``BadInput`` naming the sizes otherwise.
        Computed from the size alone, so a request is checked from its images' headers."""
        try:
            h2, w2 = size_policy.target_size(h, w, self.policy(resize), self.card.input)
        except size_policy.SizePolicyError as e:
            raise BadInput(f"model {self.name!r}: {e}", model=self.name) from None
        self.check_size(h2, w2)
        return h2, w2

    def preprocess(self, pixels: np.ndarray, resize: bool = True) -> np.ndarray:
        """``pixels`` [H, W, channels] float32 in [0, 1] -> the model's input [channels, H', W']:
        resized by the card's size policy (models/size_policy.py) unless ``resize`` is off."""
        return to_input(pixels, *self.target_size(*pixels.shape[:2], resize=resize), *self._norm)

    def preprocess_image(
        self, decoded: "Image.Image | np.ndarray", resize: bool = True,
        sizes: tuple[tuple[int, int], tuple[int, int]] | None = None,
    ) -> np.ndarray:
        """What ``codecs.images.to_image`` decoded -> the model's input [channels, H', W'],
        exactly :meth:`preprocess` of its pixels. ``sizes``: ((H, W), (H', W')) as
        :meth:`target_size` gave them from the header, used when the decoded image has that
        (H, W) (the target size is not computed a second time)."""
        hw = decoded.shape[:2] if isinstance(decoded, np.ndarray) else decoded.size[::-1]
        hw2 = sizes[1] if sizes is not None and tuple(hw) == tuple(sizes[0]) else self.target_size(*hw, resize=resize)
        return to_input(decoded, *hw2, *self._norm)

    def check_tensor(self, x: np.ndarray, valid: np.ndarray | None) -> None:
        """``BadInput`` unless ``x`` is [N, channels, H, W] within the card's sizes (and
        ``valid`` [N, 2] within H and W, for padding-invariant models)."""
        c = self.card.input.channels
        if x.ndim != 4 or x.shape[1] != c or x.shape[0] < 1:
            raise BadInput(f"model {self.name!r} takes x as [N, {c}, H, W] with N >= 1, got {list(x.shape)}")
        self.check_size(*x.shape[2:])
        if valid is not None:
            if not self.padding_invariant:
                raise BadInput(f"model {self.name!r} is not padding-invariant: it takes no 'valid' input")
            try:  # the one rule for valid sizes, shared with the ops
                check_valid(self.name, x, valid)
            except ParamError as e:
                raise BadInput(str(e), model=self.name) from None

    def run_tensor(
        self, x: np.ndarray, valid: np.ndarray | None = None, control: RunControl | None = None
    ) -> dict[str, np.ndarray]:
        """Run the graph on a ready batch ``x`` [N, C, H, W] (and ``valid`` [N, 2])."""
        n, _, h, w = x.shape
        feeds = {"x": np.ascontiguousarray(x, np.float32)}
        if self.padding_invariant:
            feeds["valid"] = np.tile(np.array([[h, w]], np.int64), (n, 1)) if valid is None else valid.astype(np.int64)
        shrink = n * h * w > ARENA_KEEP_PIXELS
        return dict(zip(self.session.output_names, self.session.run(feeds, control=control, shrink_arena=shrink)))

    def images(self, x: np.ndarray, valid: np.ndarray | None = None) -> list["np.ndarray | Padded"]:
        """A ready batch ``x`` [N, C, H, W] (and ``valid`` [N, 2]) as the batcher's items,
        each giving exactly its row's result: views [C, H, W]; for a padding-invariant
        model with ``valid``, each row cut to its valid size (not below the card's smallest
        size, which the graph was checked at) and run with its ``valid``."""
        if valid is None or not self.padding_invariant:
            return list(x)
        lo = self.card.input.min_size
        _, _, h, w = x.shape
        out: list[np.ndarray | Padded] = []
        for row, (vh, vw) in zip(x, valid.tolist()):
            ch, cw = min(h, max(vh, lo[0])), min(w, max(vw, lo[1]))
            out.append(row[:, :vh, :vw] if (ch, cw) == (vh, vw) else Padded(row[:, :ch, :cw], (vh, vw)))
        return out

    def groups(self, shapes: list[tuple[int, ...]]) -> list[list[int]]:
        """Indices of ``shapes`` ([C, H, W] each) grouped into batches: equal shapes only
        (or, for padding-invariant models, shapes whose padded batch has at most twice
        their pixels), each batch's padded pixels within ``max_batch_pixels``."""
        order = sorted(range(len(shapes)), key=lambda i: (shapes[i][1] / shapes[i][2], shapes[i][1] * shapes[i][2]))
        out: list[list[int]] = []
        cur: list[int] = []
        h = w = pixels = 0
        for i in order:
            _, hi, wi = shapes[i]
            nh, nw = max(h, hi), max(w, wi)
            padded = (len(cur) + 1) * nh * nw
            if self.padding_invariant:
                fits = padded <= 2 * (pixels + hi * wi)
            else:
                fits = not cur or shapes[cur[0]] == shapes[i]
            if cur and fits and padded <= self.max_batch_pixels:
                cur.append(i)
                h, w, pixels = nh, nw, pixels + hi * wi
            else:
                if cur:
                    out.append(cur)
                cur, h, w, pixels = [i], hi, wi, hi * wi
        if cur:
            out.append(cur)
        return out

    def run_batch(self, items: list["np.ndarray | Padded"], control: RunControl | None = None) -> list[Output]:
        """Items [C, H_i, W_i] (or :class:`Padded`) -> one :class:`Output` each, as if run one by one."""
        out: list[Output | None] = [None] * len(items)
        for idx in self.groups([a.shape for a in items]):
            parts = [_image(items[i]) for i in idx]
            h = max(a.shape[1] for a, _ in parts)
            w = max(a.shape[2] for a, _ in parts)
            if len(idx) == 1:
                x = parts[0][0][None]
            else:
                x = np.zeros((len(idx), parts[0][0].shape[0], h, w), np.float32)
                for j, (a, _) in enumerate(parts):
                    x[j, :, : a.shape[1], : a.shape[2]] = a
            valid = np.array([v for _, v in parts], np.int64).reshape(-1, 2)
            r = self.run_tensor(x, valid, control)
            for j, i in enumerate(idx):
                out[i] = Output(r["logits"][j], r["embedding"][j] if "embedding" in r else None)
        return out

    def warm_up(self, sizes: list[tuple[int, int]]) -> float:
        """Run each size once (batch of 1); returns seconds taken."""
        t0 = time.perf_counter()
        lo, hi = self.card.input.min_size, self.card.input.max_size
        for h, w in sizes:
            h, w = min(max(h, lo[0]), hi[0]), min(max(w, lo[1]), hi[1])
            self.run_batch([np.zeros((self.card.input.channels, h, w), np.float32)])
        return time.perf_counter() - t0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


def top_k(card: ModelCard, logits: np.ndarray, k: int) -> list[dict]:
    p = softmax(logits)
    order = np.argsort(-p, kind="stable")[: max(1, min(k, len(p)))]
    return [{"index": int(i), "label": card.labels[i], "probability": float(p[i])} for i in order]
