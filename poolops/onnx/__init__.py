"""poolops in ONNX: standalone op graphs and the exporter for modules with poolops layers."""

from poolops.onnx.graphs import op_backward_model, op_model


def export(module, example_input, path=None, **kwargs):
    """Export an ``nn.Module`` containing poolops layers; see :func:`poolops.onnx.exporter.export`."""
    from poolops.onnx.exporter import export as _export

    return _export(module, example_input, path, **kwargs)


__all__ = ["export", "op_backward_model", "op_model"]
