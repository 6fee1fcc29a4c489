"""The ``poolops`` command: ``ops``, ``bench ops``, ``export``, ``models list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
        inputs = ", ".join([*spec.inputs, *(f"{n} (optional)" for n in spec.optional_inputs)])
        table.add_row(name, spec.module_name, inputs, ", ".join(spec.outputs), defaults)
    Console().print(table)
    return 0


def _cmd_bench_ops(args: argparse.Namespace) -> int:
    from poolops import bench

    bench.run_ops(ops=args.op or None, quick=args.quick, repeat=args.repeat, markdown=args.markdown)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from models.zoo import main_export

    main_export(args.name or None, args.root, progress=not args.quiet)
    return 0


def _cmd_models_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from models.registry import load_registry
    from models.zoo import zoo_dir

    root = args.root or zoo_dir()
    table = Table(title=f"models in {root}")
    for col in ("model", "status", "task", "head", "metrics"):
        table.add_column(col)
    from models.zoo import BUILTIN

    registry = load_registry(root)
    for name in BUILTIN:
        if name not in registry:
            table.add_row(name, f"not built: run `poolops export {name}`", "", "", "")
    for name, entry in registry.items():
        card = entry.card
        metrics = ", ".join(f"{m.name}={m.value:g}" for m in card.metrics) if card else ""
        status = "ready" if entry.available else f"unavailable: {entry.reason}"
        table.add_row(name, status, card.task if card else "", str(card.head.get("type")) if card else "", metrics)
    Console().print(table)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from models.folder import train_folder
    from models.zoo import zoo_dir

    head = {"type": args.head}
    if args.head == "spp":
        head.update(levels=args.levels, mode=args.mode)
    entry, plot = train_folder(
        args.data, args.name, args.root or zoo_dir(), head=head, pretrained=args.pretrained,
        freeze=args.freeze, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
    )
    for m in entry.card.metrics:
        print(f"{m.name}: {m.value:.4f} ({m.data})")
    print(f"registered {entry.name} in {entry.path}; curves: {plot}")
    return 0


def _cmd_experiments(args: argparse.Namespace) -> int:
    from models.experiments import main as run_experiments

    return run_experiments(progress=not args.quiet)


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
    export = sub.add_parser("export", help="build the built-in models into the registry (default: the missing ones)")
    export.add_argument("name", nargs="*", help="built-in model names (default: every missing or broken one)")
    export.add_argument("--root", type=Path, default=None, help="registry directory (default: models/zoo)")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=_cmd_export)

    train = sub.add_parser("train", help="train an SPP classifier on an image folder, export and register it")
    train.add_argument("--data", type=Path, required=True, help="DIR/<class>/*.png|jpg...: images of any size")
    train.add_argument("--name", required=True, help="model name in the registry")
    train.add_argument("--head", choices=["spp", "gap"], default="spp")
    train.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4], help="SPP pyramid levels")
    train.add_argument("--mode", choices=["max", "avg"], default="max", help="SPP pooling")
    train.add_argument("--pretrained", action="store_true", help="the ImageNet EfficientNet-Lite0 backbone")
    train.add_argument("--freeze", action="store_true", help="with --pretrained: train only the head")
    train.add_argument("--steps", type=int, default=300)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--root", type=Path, default=None, help="registry directory (default: models/zoo)")
    train.set_defaults(func=_cmd_train)

    exp = sub.add_parser("experiments", help="the README's ablation tables (trains the extra variants; minutes)")
    exp.add_argument("--quiet", action="store_true", help="no progress bar")
    exp.set_defaults(func=_cmd_experiments)

    models = sub.add_parser("models", help="the model registry")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_list = models_sub.add_parser("list", help="registered models, their status and metrics")
    models_list.add_argument("--root", type=Path, default=None, help="registry directory (default: models/zoo)")
    models_list.set_defaults(func=_cmd_models_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
