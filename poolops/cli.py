"""The ``poolops`` command: ``poolops bench ops``, ``poolops ops``."""

from __future__ import annotations

import argparse
import sys


def _cmd_ops(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from poolops import get_op, list_ops

    table = Table(title="poolops ops")
    for col in ("op", "module", "inputs", "outputs", "parameters (defaults)"):
        table.add_column(col)
    for name in list_ops():
        spec = get_op(name)
        defaults = ", ".join(f"{k}={v.default!r}" for k, v in spec.params.model_fields.items())
        table.add_row(name, spec.module_name, ", ".join(spec.inputs), ", ".join(spec.outputs), defaults)
    Console().print(table)
    return 0


def _cmd_bench_ops(args: argparse.Namespace) -> int:
    from poolops import bench

    bench.run_ops(ops=args.op or None, quick=args.quick, repeat=args.repeat, markdown=args.markdown)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ops = sub.add_parser("ops", help="list the registered ops and their parameters")
    ops.set_defaults(func=_cmd_ops)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bench_ops = bench_sub.add_parser("ops", help="torch eager vs ONNX Runtime for every op, with memory bandwidth")
    bench_ops.add_argument("--op", action="append", help="only this op (repeatable)")
    bench_ops.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke test)")
    bench_ops.add_argument("--repeat", type=int, default=None, help="timed runs per measurement")
    bench_ops.add_argument("--markdown", action="store_true", help="print a Markdown table")
    bench_ops.set_defaults(func=_cmd_bench_ops)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
