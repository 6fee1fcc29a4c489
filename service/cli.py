"""The `poolops` command (top of the layers: it may import poolops, models and service):
``ops``, ``bench``, ``export``, ``train``, ``experiments``, ``serve``, ``models``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_ops(args: argparse.Namespace) -> int:
    if args.markdown:
        from poolops.reference import markdown

        print(markdown(), end="")
        return 0
    from poolops import get_op, list_ops

    rows = []
    for name in list_ops():
        spec = get_op(name)
        rows.append({
            "op": name, "module": spec.module_name, "family": spec.family, "inputs": list(spec.inputs),
            "optional_inputs": list(spec.optional_inputs), "outputs": list(spec.outputs),
            "parameters": spec.params().model_dump(mode="json"),
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    # two columns whatever the width: the op, and the rest on lines of their own (wrapped)
    table = Table(title="poolops ops", show_lines=True, expand=False)
    table.add_column("op", no_wrap=True)
    table.add_column("module, inputs -> outputs, parameters (defaults)", overflow="fold")
    for r in rows:
        inputs = ", ".join([*r["inputs"], *(f"{n}?" for n in r["optional_inputs"])])
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["parameters"].items()) or "-"
        table.add_row(r["op"], f"{r['module']} ({r['family']}): {inputs} -> {', '.join(r['outputs'])}\n{params}")
    Console().print(table)
    return 0


def _cmd_bench_ops(args: argparse.Namespace) -> int:
    if args.device == "cuda":
        from poolops import bench_cuda

        bench_cuda.run_cuda_ops(ops=args.op or None, quick=args.quick, repeat=args.repeat, markdown=args.markdown)
        return 0
    from poolops import bench

    rows = bench.run_ops(ops=args.op or None, quick=args.quick, repeat=args.repeat, markdown=args.markdown)
    if args.png:
        from poolops.charts import bench_ops_chart

        print(f"\n![poolops bench ops]({args.png.name})" if args.markdown else f"chart: {args.png}")
        bench_ops_chart(rows, args.png, note=" ".join(["poolops bench ops", *sys.argv[3:]]))
    return 0


def _cmd_bench_build(args: argparse.Namespace) -> int:
    from poolops.graph_size import run_build

    run_build(repeat=args.repeat, markdown=args.markdown, ops=args.op)
    return 0


def _cmd_bench_serve(args: argparse.Namespace) -> int:
    from poolops_service import bench_serve

    out = bench_serve.run_serve(model=args.model, size=args.size, requests=args.requests,
                                concurrency=args.concurrency, quick=args.quick, markdown=args.markdown,
                                client=args.client, fmt=args.format, batch_max=args.batch_max)
    if args.png:
        from poolops.charts import bench_serve_chart

        print(f"\n![poolops bench serve]({args.png.name})" if args.markdown else f"chart: {args.png}")
        bench_serve_chart(out["rows"], args.png, note=" ".join(["poolops bench serve", *sys.argv[3:]]))
    return 0


def _cmd_bench_batch(args: argparse.Namespace) -> int:
    from poolops_service import bench_batch

    bench_batch.run_batch(model=args.model, size=args.size, limits=args.limits, concurrency=args.concurrency,
                          seconds=args.seconds, rounds=args.rounds, markdown=args.markdown, client=args.client)
    return 0


def _cmd_bench_hostile(args: argparse.Namespace) -> int:
    from poolops_service import hostile

    return hostile.main(only=args.case, full=args.full)


def _cmd_bench_ab(args: argparse.Namespace) -> int:
    from poolops_service import ab_serve

    return ab_serve.main(args.base, args.model, args.size, args.blocks, args.per_block)


def _cmd_export_torch(args: argparse.Namespace) -> int:
    from poolops_models.torch_import import export_torch, parse_sizes

    labels = args.labels.read_text().splitlines() if args.labels else None
    floats = (lambda t: [float(v) for v in t.split(",")] if t else None)  # noqa: E731
    report = export_torch(
        args.target, [int(v) for v in args.example.split(",")], out=args.out,
        check=parse_sizes(args.check) if args.check else None, register=args.register, root=args.root,
        labels=labels, task=args.task, mean=floats(args.mean), std=floats(args.std),
        stock_pooling=not args.no_stock_pooling, command="poolops export-torch " + " ".join(sys.argv[2:]),
    )
    print(f"wrote {report['path']} (N, H, W dynamic)")
    for c in report["checks"]:
        verdict = "ok" if c.ok else f"FAILED: {c.error or 'differs'}"
        err = "" if c.worst_error is None else f"worst error {c.worst_error:.2e} (relative) "
        print(f"  {c.size[0]}x{c.size[1]}: {err}{verdict}")
    if report["registered"]:
        print(f"registered in {report['registered']}: `poolops serve` serves it")
    return 0 if all(c.ok for c in report["checks"]) else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from poolops_models.recipes import main_export

    main_export(args.name or None, args.root, progress=not args.quiet)
    return 0


def _cmd_models_list(args: argparse.Namespace) -> int:
    from poolops_models.cards import load_registry
    from poolops_models.recipes import BUILTIN, zoo_dir

    root = args.root or zoo_dir()
    registry = load_registry(root)
    rows = [{"model": n, "status": f"not built: run `poolops export {n}`", "task": "", "head": "", "metrics": {}}
            for n in BUILTIN if n not in registry]
    for name, entry in registry.items():
        card = entry.card
        rows.append({
            "model": name, "status": "ready" if entry.available else f"unavailable: {entry.reason}",
            "task": card.task if card else "", "head": str(card.head.get("type")) if card else "",
            "metrics": {m.name: m.value for m in card.metrics} if card else {},
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models in {root}", show_lines=True)
    table.add_column("model", no_wrap=True)
    table.add_column("status, task, head, metrics", overflow="fold")
    for r in rows:
        metrics = ", ".join(f"{k}={v:g}" for k, v in r["metrics"].items())
        table.add_row(r["model"], "\n".join(x for x in (r["status"], f"{r['task']} ({r['head']} head)" if r["task"] else "", metrics) if x))
    Console().print(table)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from poolops.ops.spp import DEFAULT_LEVELS
    from poolops_models.recipes import zoo_dir
    from poolops_models.train_folder import train_folder

    head = {"type": args.head}
    if args.head == "spp":
        head.update(levels=args.levels or list(DEFAULT_LEVELS), mode=args.mode)
    entry, plot = train_folder(
        args.data, args.name, args.root or zoo_dir(), head=head, pretrained=args.pretrained,
        freeze=args.freeze, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
    )
    from poolops_models import size_policy

    print(f"size policy: {size_policy.describe(entry.card.size_policy)} (chosen on the validation split)"
          if entry.card.size_policy else "size policy: none")
    for m in entry.card.metrics:
        print(f"{m.name}: {m.value:.4f} ({m.data})")
    print(f"registered {entry.name} in {entry.path}; curves: {plot}")
    return 0


def _cmd_experiments(args: argparse.Namespace) -> int:
    from poolops_models.experiments import main as run_experiments

    return run_experiments(progress=not args.quiet, buckets_only=args.buckets_only, splice_into=args.splice,
                           plot=args.plot, resize=args.resize)


def _cmd_serve(args: argparse.Namespace) -> int:
    # flags become POOLOPS_* variables, so every worker process builds the same Settings
    import os

    import uvicorn

    flags = {"host": args.host, "port": args.port, "workers": args.workers, "models_dir": args.models_dir,
             "device": args.device, "root_path": args.root_path}
    if args.no_ui:
        flags["ui"] = "false"
    for k, v in flags.items():
        if v is not None:
            os.environ[f"POOLOPS_{k.upper()}"] = str(v)
    from poolops_service.config import Settings
    from poolops_service.server import uvicorn_options

    from poolops_service.logs import log_config

    s = Settings()
    uvicorn.run("poolops_service.app:create_app", factory=True, workers=s.workers, log_level=args.log_level,
                log_config=log_config(args.log_level), **uvicorn_options(s))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ops = sub.add_parser("ops", help="list the registered ops and their parameters")
    ops.add_argument("--markdown", action="store_true", help="print the ops reference (docs/ops.md)")
    ops.add_argument("--json", action="store_true", help="print the ops as JSON (name, module, inputs, outputs, defaults)")
    ops.set_defaults(func=_cmd_ops)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bench_ops = bench_sub.add_parser("ops", help="torch eager vs ONNX Runtime for every op, with memory bandwidth")
    bench_ops.add_argument("--op", action="append", help="only this op (repeatable)")
    bench_ops.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke test)")
    bench_ops.add_argument("--repeat", type=int, default=None, help="timed runs per measurement")
    bench_ops.add_argument("--markdown", action="store_true", help="print a Markdown table")
    bench_ops.add_argument("--png", type=Path, default=None, metavar="FILE",
                           help="also draw the times as a PNG chart (matplotlib); with --markdown the page links it")
    bench_ops.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                           help="cpu: torch vs ONNX Runtime on the CPU; cuda: torch CUDA vs ORT's CUDA provider")
    bench_ops.set_defaults(func=_cmd_bench_ops)
    bench_serve = bench_sub.add_parser(
        "serve", help="raw session.run vs this server (batching on/off) vs a naive FastAPI + torch app, over HTTP")
    bench_serve.add_argument("--model", default="digits-spp", help="registered model (default digits-spp)")
    bench_serve.add_argument("--size", type=int, default=128, help="image height and width (default 128)")
    bench_serve.add_argument("--requests", type=int, default=None, help="timed requests per level (default 300)")
    bench_serve.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="levels (default 1 8 32)")
    bench_serve.add_argument("--quick", action="store_true", help="few requests, short bounds (a smoke test)")
    bench_serve.add_argument("--markdown", action="store_true", help="print a Markdown table")
    bench_serve.add_argument("--png", type=Path, default=None, metavar="FILE",
                             help="also draw p50 and p99 as a PNG chart (matplotlib); with --markdown the page links it")
    bench_serve.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto",
                             help="load generator (auto: wrk when installed; httpx costs the shared cores more)")
    bench_serve.add_argument("--format", choices=["png", "jpeg"], default=None,
                             help="upload format (default: PNG for grey models, JPEG for RGB)")
    bench_serve.add_argument("--batch-max", type=int, default=None, metavar="N",
                             help="batching on: N images per batch for this model (POOLOPS_MODEL_BATCH_MAX_SIZE; "
                                  "`poolops bench batch` says which); default: POOLOPS_BATCH_MAX_SIZE's default")
    bench_serve.set_defaults(func=_cmd_bench_serve)
    bench_build = bench_sub.add_parser(
        "build", help="how long each op's ONNX graphs take to build at its largest parameters (nodes, KB, ms)")
    bench_build.add_argument("--op", action="append", help="only this op (repeatable)")
    bench_build.add_argument("--repeat", type=int, default=5, help="builds per graph (the fastest is shown)")
    bench_build.add_argument("--markdown", action="store_true", help="print a Markdown page")
    bench_build.set_defaults(func=_cmd_bench_build)
    bench_batch = bench_sub.add_parser(
        "batch", help="the server at each batch limit under saturating load: which POOLOPS_MODEL_BATCH_MAX_SIZE to set")
    bench_batch.add_argument("--model", default="digits-spp", help="registered model (default digits-spp)")
    bench_batch.add_argument("--size", type=int, default=128, help="image height and width (default 128)")
    bench_batch.add_argument("--limits", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="default 1 2 4 8 16")
    bench_batch.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    bench_batch.add_argument("--seconds", type=int, default=3, help="per server and round, with wrk (default 3)")
    bench_batch.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    bench_batch.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto",
                             help="load generator (auto: wrk when installed)")
    bench_batch.add_argument("--markdown", action="store_true", help="print a Markdown page")
    bench_batch.set_defaults(func=_cmd_bench_batch)
    bench_hostile = bench_sub.add_parser(
        "hostile", help="hostile clients against a real server: answers, time, memory from /proc, a normal client's latency")
    bench_hostile.add_argument("--case", action="append", help="only cases whose name contains this (repeatable)")
    bench_hostile.add_argument("--full", action="store_true",
                               help="as deployed: the UI and effnet-lite0-imagenet (when built) too")
    bench_hostile.set_defaults(func=_cmd_bench_hostile)
    bench_ab = bench_sub.add_parser(
        "ab", help="this tree's server against another commit's: interleaved blocks, median latency and CPU per request")
    bench_ab.add_argument("--base", required=True, help="the commit to compare against (a git ref)")
    bench_ab.add_argument("--model", default="digits-spp", help="registered model (default digits-spp)")
    bench_ab.add_argument("--size", type=int, default=128, help="image height and width (default 128)")
    bench_ab.add_argument("--blocks", type=int, default=12, help="interleaved blocks per server (default 12)")
    bench_ab.add_argument("--per-block", type=int, default=150, help="sequential requests per block (default 150)")
    bench_ab.set_defaults(func=_cmd_bench_ab)
    export = sub.add_parser("export", help="build the built-in models into the registry (default: the missing ones)")
    export.add_argument("name", nargs="*", help="built-in model names (default: every missing or broken one)")
    export.add_argument("--root", type=Path, default=None, help="registry directory (default: models/zoo)")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=_cmd_export)

    et = sub.add_parser("export-torch", help="export an unmodified PyTorch model (its own pooling too) to ONNX "
                                             "with dynamic N, H, W, check it against torch at other sizes")
    et.add_argument("target", help="package.module:factory, a callable returning the nn.Module (or the module)")
    et.add_argument("--example", default="1,3,224,224", help="N,C,H,W of the example input (default 1,3,224,224)")
    et.add_argument("--out", type=Path, help="the .onnx file to write (or --register)")
    et.add_argument("--check", help="sizes to check against torch, e.g. 37x53,100x31 (default: two unlike the "
                                    "example's, keeping its divisibility)")
    et.add_argument("--register", metavar="NAME", help="register it as model NAME (card, labels) for poolops serve")
    et.add_argument("--root", type=Path, help="registry directory for --register (default POOLOPS_MODELS_DIR's zoo)")
    et.add_argument("--labels", type=Path, help="one label per output, one per line (default 0..L-1)")
    et.add_argument("--task", default="image classification", help="the card's task")
    et.add_argument("--mean", help="per-channel mean on [0, 1] pixels for the card, e.g. 0.485,0.456,0.406")
    et.add_argument("--std", help="per-channel std for the card, e.g. 0.229,0.224,0.225")
    et.add_argument("--no-stock-pooling", action="store_true",
                    help="leave PyTorch's pooling to PyTorch's exporter (fixed to the example's size)")
    et.set_defaults(func=_cmd_export_torch)

    train = sub.add_parser("train", help="train an SPP classifier on an image folder (multi-size recipe, size "
                                         "policy and per-size accuracy on the validation split), export and register it")
    train.add_argument("--data", type=Path, required=True, help="DIR/<class>/*.png|jpg...: images of any size")
    train.add_argument("--name", required=True, help="model name in the registry")
    train.add_argument("--head", choices=["spp", "gap"], default="spp")
    train.add_argument("--levels", type=int, nargs="+", help="SPP pyramid levels (default: the spp op's)")
    train.add_argument("--mode", choices=["max", "avg"], default="max", help="SPP pooling")
    train.add_argument("--pretrained", action="store_true", help="the ImageNet EfficientNet-Lite0 backbone")
    train.add_argument("--freeze", action="store_true", help="with --pretrained: train only the head")
    train.add_argument("--steps", type=int, default=300)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--root", type=Path, default=None, help="registry directory (default: models/zoo)")
    train.set_defaults(func=_cmd_train)

    exp = sub.add_parser("experiments", help="the ablation tables of docs/models.md (trains the extra variants; minutes)")
    exp.add_argument("--quiet", action="store_true", help="no progress bar")
    exp.add_argument("--buckets-only", action="store_true",
                     help="only the accuracy-by-size table (registry models, no training; about a minute)")
    exp.add_argument("--splice", type=Path, default=None, metavar="FILE",
                     help="write into FILE instead of printing: with --buckets-only, replace FILE's "
                          "'## Accuracy by image size' section (to the end); else the whole file")
    exp.add_argument("--plot", type=Path, default=Path("docs") / "accuracy_by_size.png",
                     help="where the accuracy-by-size PNG goes (default docs/accuracy_by_size.png)")
    exp.add_argument("--resize", choices=["card", "none"], default="card",
                     help="registry models fed through their card's size policy (card, the server's default) "
                          "or as the images are (none, the API's resize=none); the size-bucket table shows both")
    exp.set_defaults(func=_cmd_experiments)

    serve = sub.add_parser("serve", help="the HTTP service (FastAPI + ONNX Runtime, UI at /ui); POOLOPS_* settings")
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (POOLOPS_HOST); 0.0.0.0 in containers")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (POOLOPS_PORT)")
    serve.add_argument("--workers", type=int, default=None, help="processes (POOLOPS_WORKERS); each loads every model")
    serve.add_argument("--models-dir", type=Path, default=None, help="registry directory (POOLOPS_MODELS_DIR)")
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="POOLOPS_DEVICE")
    serve.add_argument("--root-path", default=None, help="prefix behind a reverse proxy (POOLOPS_ROOT_PATH)")
    serve.add_argument("--no-ui", action="store_true", help="do not mount the Gradio UI")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_cmd_serve)

    models = sub.add_parser("models", help="the model registry")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_list = models_sub.add_parser("list", help="registered models, their status and metrics")
    models_list.add_argument("--root", type=Path, default=None, help="registry directory (default: models/zoo)")
    models_list.add_argument("--json", action="store_true", help="print the models as JSON")
    models_list.set_defaults(func=_cmd_models_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
