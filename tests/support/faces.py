"""One op through each of its faces on small worked examples: the torch function,
the ONNX forward graph, torch autograd and the ONNX backward graph."""

from __future__ import annotations

import numpy as np
import torch

import poolops
import poolops.functional as PF
from poolops.onnx import op_backward_model, op_model
from support.runtime import session


def onnx_forward(name, x, *extra, **params):
    """``y`` of the op's ONNX graph in ONNX Runtime; ``extra``: the inputs after x, in order."""
    spec = poolops.get_op(name)
    names = spec.all_inputs[: 1 + len(extra)]
    feeds = {n: np.asarray(v, np.float32) for n, v in zip(names, (x, *extra))}
    return session(op_model(name, outputs=("y",), inputs=names, **params)).run(None, feeds)[0]


def onnx_backward(name, x, g, **params):
    feeds = {"x": np.asarray(x, np.float32), "grad_y": np.asarray(g, np.float32)}
    return session(op_backward_model(name, **params)).run(None, feeds)[0]


def autograd(name, x, g, **params):
    """``(y, grad_x)`` of the torch function for the output gradient ``g``."""
    spec = poolops.get_op(name)
    xt = torch.tensor(np.asarray(x, np.float32), requires_grad=True)
    y = spec.torch_fn(spec.parse(params), xt)[0]
    y.backward(torch.tensor(np.asarray(g, np.float32)))
    return y.detach().numpy(), xt.grad.numpy()


def both_faces(name, x, *extra, **params):
    """(torch, ONNX Runtime) outputs of the op."""
    t = [torch.tensor(np.asarray(v, np.float32)) for v in (x, *extra)]
    return PF.call(name, *t, **params).numpy(), onnx_forward(name, x, *extra, **params)


def check_all_faces(name, x, expected_y, g=None, expected_grad=None, atol=1e-4, **params):
    """torch function, ONNX forward, autograd and ONNX backward against the worked example."""
    x = np.asarray(x, np.float32)
    y = PF.call(name, torch.from_numpy(x), **params).numpy()
    np.testing.assert_allclose(y, expected_y, atol=atol)
    np.testing.assert_allclose(onnx_forward(name, x, **params), expected_y, atol=atol)
    if g is not None:
        _, grad = autograd(name, x, g, **params)
        np.testing.assert_allclose(grad, expected_grad, atol=atol)
        np.testing.assert_allclose(onnx_backward(name, x, g, **params), expected_grad, atol=atol)


def check_head_export(head: torch.nn.Module, tmp_path, what: str) -> None:
    """A small conv net ending in ``head`` exports with dynamic N, H, W
    (``poolops.onnx.export``) and matches torch in ONNX Runtime at several sizes."""
    from poolops.onnx import export
    from support.runtime import assert_close

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), head).eval()
    sess = session(export(model, torch.randn(2, 3, 16, 20), tmp_path / "m.onnx"))
    for shape in [(1, 3, 9, 13), (3, 3, 32, 24), (2, 3, 4, 2)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        assert_close(sess.run(None, {"x": x.numpy()})[0], expected, what=f"{what} at {shape}")


def check_worked_example_and_backward(name: str, onnx_backward_graph: bool) -> None:
    """The op's doc has a worked example, and an ONNX backward graph or not, as stated."""
    spec = poolops.get_op(name)
    assert "Example" in spec.doc or "example" in spec.doc
    assert (spec.onnx_backward is not None) == onnx_backward_graph
