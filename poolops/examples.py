"""The sources' worked examples, defined once: the UI's one-click examples (Playground,
Compare, SPP explorer), their browser tests and ``tests/poolops/test_source_examples.py``
(every number below checked in torch and in ONNX Runtime) all read them from here.

Each example names its op(s) and parameters, the input, the numbers the source gives,
and the source: the pages in ``shared/seeds/`` the project was started from.

- ``pooling-notes``: "[CV基础] 最大池化 (Max Pooling)、平均池化 (Average Pooling) 等各种池化的
  作用和区别": max and average pooling forward and backward, stochastic pooling of
  (1, 2, 3, 4), SPP's 1 + 4 + 16 bins.
- ``cnn-notes-03``: "卷积神经网络笔记03": SPP levels 1x1, 2x2, 4x4 giving ``C + 4C + 16C = 21C``
  values whatever H and W; ``MultiScalePooling`` (max pools 2, 4, 8 brought to the
  coarsest size and concatenated: ``[1, 64, 64, 64] -> [1, 192, 8, 8]``); ``MixedPooling``
  (max and average pooling concatenated on channels).

No torch here: the serving process reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = {  # as the UI cites them (the titles, in Chinese, are in this module's docstring)
    "pooling-notes": "notes on max, average and other pooling and how they differ (shared/seeds/000)",
    "cnn-notes-03": "convolutional neural network notes 03 (shared/seeds/004)",
}

Matrix = list  # a nested list: [H][W] (one plane), [C][H][W] or [N][C][H][W]


@dataclass(frozen=True)
class Random:
    """A random normal input of ``shape`` (NCHW) from ``numpy.random.default_rng(seed)``,
    for examples that give only a shape (``torch.randn(1, 64, 64, 64)``)."""

    shape: tuple[int, ...]
    seed: int = 0

    @property
    def text(self) -> str:
        """How the UI's matrix box writes it."""
        return f"random {'x'.join(map(str, self.shape))} seed {self.seed}"


@dataclass(frozen=True)
class OpExample:
    """One op on one input: the forward output and, with ``grad_y``, where the gradient
    goes (``grad_x``, the gradient of ``sum(y * grad_y)``).

    Attributes:
        probabilities: for stochastic pooling, each window's probabilities ``x_i / sum(x)``
            in row-major order, one list per output cell.
        samples_from: for stochastic pooling in ``train`` mode, the values a sample may take
            (each seed draws one of them).
    """

    key: str
    title: str
    source: str
    says: str
    op: str
    params: dict[str, Any]
    x: Matrix | Random
    y: Matrix | None = None
    grad_y: Matrix | None = None
    grad_x: Matrix | None = None
    y_shape: tuple[int, ...] | None = None
    probabilities: list[list[float]] | None = None
    samples_from: tuple[float, ...] | None = None


@dataclass(frozen=True)
class CompareExample:
    """Several ops on one input; ``expect`` gives, per op, ``y`` (first plane) and/or ``y_shape``."""

    key: str
    title: str
    source: str
    says: str
    x: Matrix | Random
    ops: dict[str, dict[str, Any]]
    expect: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SppExample:
    """The ``spp`` op at several input sizes: the same vector length ``channels * sum(n^2)``."""

    key: str
    title: str
    source: str
    says: str
    levels: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]  # (H, W): the first is drawn, the others only run
    channels: int = 1
    mode: str = "max"
    image: str | None = None  # an example image by name (the UI's docs/examples/NAME.jpg), drawn at sizes[0]
    length: int = 0


EXAMPLE_2X2: Matrix = [[1, 3], [2, 2]]

OP_EXAMPLES: tuple[OpExample, ...] = (
    OpExample(
        key="max-2x2",
        title="max: [[1, 3], [2, 2]] -> 3, gradient 3 to the argmax",
        source="pooling-notes",
        says="Forward takes the largest value of the window and remembers where it was; backward puts the "
        "gradient at that position and 0 elsewhere.",
        op="max",
        params={"kernel": 2},
        x=EXAMPLE_2X2,
        y=[[3]],
        grad_y=[[3]],
        grad_x=[[0, 3], [0, 0]],
    ),
    OpExample(
        key="avg-2x2",
        title="avg: [[1, 3], [2, 2]] -> 2, gradient 2 spread as 0.5 each",
        source="pooling-notes",
        says="Forward averages the window; backward divides the gradient by the window's size and gives "
        "each position its share.",
        op="avg",
        params={"kernel": 2},
        x=EXAMPLE_2X2,
        y=[[2]],
        grad_y=[[2]],
        grad_x=[[0.5, 0.5], [0.5, 0.5]],
    ),
    OpExample(
        key="stochastic-eval",
        title="stochastic: (1, 2, 3, 4) -> probabilities 0.1-0.4, expectation 3",
        source="pooling-notes",
        says="The window's values normalised: 1/10 = 0.1, 2/10 = 0.2, 3/10 = 0.3, 4/10 = 0.4; at test time "
        "the weighted average 1x0.1 + 2x0.2 + 3x0.3 + 4x0.4 = 3 (the expectation).",
        op="stochastic",
        params={"kernel": 2, "mode": "eval"},
        x=[[1, 2], [3, 4]],
        y=[[3]],
        probabilities=[[0.1, 0.2, 0.3, 0.4]],
    ),
    OpExample(
        key="stochastic-train",
        title="stochastic, train mode: (1, 2, 3, 4) -> one value, drawn with p 0.1-0.4",
        source="pooling-notes",
        says="In training one value is picked with those probabilities (picking 0.3 gives 3); backward keeps "
        "only the picked position, like max pooling.",
        op="stochastic",
        params={"kernel": 2, "mode": "train", "seed": 0},
        x=[[1, 2], [3, 4]],
        grad_y=[[1]],
        probabilities=[[0.1, 0.2, 0.3, 0.4]],
        samples_from=(1, 2, 3, 4),
    ),
    OpExample(
        key="spp-21c",
        title="spp levels 1, 2, 4: 21 values per channel",
        source="cnn-notes-03",
        says="1x1 pooling gives C values, 2x2 gives 4C, 4x4 gives 16C: C + 4C + 16C = 21C, whatever H and W.",
        op="spp",
        params={"levels": [1, 2, 4]},
        x=Random((1, 1, 7, 10)),
        y_shape=(1, 21),
    ),
)

COMPARE_EXAMPLES: tuple[CompareExample, ...] = (
    CompareExample(
        key="max-avg-2x2",
        title="max, avg and mixed on [[1, 3], [2, 2]]: 3, 2 and 2.5",
        source="pooling-notes",
        says="Max keeps the window's largest value (3), average its mean (2); mixed pooling weighs both "
        "(alpha 0.5: 2.5).",
        x=EXAMPLE_2X2,
        ops={"max": {"kernel": 2}, "avg": {"kernel": 2}, "mixed": {"kernel": 2, "alpha": 0.5}},
        expect={"max": {"y": [[3]]}, "avg": {"y": [[2]]}, "mixed": {"y": [[2.5]]}},
    ),
    CompareExample(
        key="multiscale-mixed",
        title="multiscale and mixed pooling on one [1, 64, 64, 64] input",
        source="cnn-notes-03",
        says="MultiScalePooling: max pools 2x2, 4x4 and 8x8, each brought to the 8x8 pool's size and "
        "concatenated: [1, 64, 64, 64] -> [1, 192, 8, 8]. MixedPooling concatenates a max and an average "
        "pool on channels (the source's 2x2 max and 3x3 average give maps of different sizes; poolops' "
        "mixed uses one window for both, so they always fit): [1, 128, 32, 32].",
        x=Random((1, 64, 64, 64)),
        ops={
            "multiscale": {"kernels": [2, 4, 8]},
            "mixed": {"kernel": 2, "mode": "concat"},
            "max": {"kernel": 2},
            "avg": {"kernel": 2},
        },
        expect={
            "multiscale": {"y_shape": (1, 192, 8, 8)},
            "mixed": {"y_shape": (1, 128, 32, 32)},
            "max": {"y_shape": (1, 64, 32, 32)},
            "avg": {"y_shape": (1, 64, 32, 32)},
        },
    ),
)

SPP_EXAMPLES: tuple[SppExample, ...] = (
    SppExample(
        key="spp-two-sizes",
        title="spp 1, 2, 4 at 13x17 and 40x64: 21 values each",
        source="cnn-notes-03",
        says="C + 4C + 16C = 21C values whatever H and W (here C = 1).",
        levels=(1, 2, 4),
        sizes=((13, 17), (40, 64)),
        channels=1,
        length=21,
    ),
    SppExample(
        key="spp-photo",
        title="spp 1, 2, 4 on the cat photo (RGB) and at 37x53: 63 = 21 x 3",
        source="cnn-notes-03",
        says="C + 4C + 16C = 21C values whatever H and W (here C = 3).",
        levels=(1, 2, 4),
        sizes=((200, 300), (37, 53)),
        channels=3,
        image="chelsea",
        length=63,
    ),
)


def op_example(key: str) -> OpExample:
    return _by_key(OP_EXAMPLES, key)


def compare_example(key: str) -> CompareExample:
    return _by_key(COMPARE_EXAMPLES, key)


def spp_example(key: str) -> SppExample:
    return _by_key(SPP_EXAMPLES, key)


def _by_key(items, key: str):
    for e in items:
        if e.key == key:
            return e
    raise ValueError(f"no example {key!r}; known: {', '.join(e.key for e in items)}")


def matrix_text(x: Matrix | Random) -> str:
    """The input as the UI's matrix box takes it: rows on lines for one plane, JSON for more
    dims, ``random AxBxCxD seed S`` for a random one."""
    if isinstance(x, Random):
        return x.text
    if x and isinstance(x[0], list) and x[0] and not isinstance(x[0][0], list):
        return "\n".join(" ".join(_num(v) for v in row) for row in x)
    import json

    return json.dumps(x)


def _num(v: float) -> str:
    return str(int(v)) if float(v) == int(v) else str(v)
