"""Command line: export | inspect | validate | lint | targets | demo. The only module that prints.

A user error prints one line and exits 2 (3 for a missed budget with --fail-on-budget);
a traceback only with --debug.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import warnings

from .cli_tables import print_checks, print_summary
from .errors import EdgepackError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        print(f"edgepack: error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _add_model_args(p, command: str):
    p.add_argument("model", help="model: .onnx, TorchScript .pt, torch.export .pt2, Keras .keras/.h5 or "
                                 "SavedModel folder (inspect: .tflite too)")
    _add_config_flags(p, command)


def _add_config_flags(p, command: str, aliases: dict | None = None) -> None:
    """One flag per ExportConfig field the command takes, named like the field (``--calib-limit`` for
    calib_limit); help, allowed values and default from the field (config.py). Defaults stay None so that
    only what is given overrides a --config file."""
    from dataclasses import MISSING, fields
    from typing import get_args, get_type_hints

    from .config import ExportConfig

    hints = get_type_hints(ExportConfig)
    for f in fields(ExportConfig):
        meta = f.metadata
        if command not in meta["commands"]:
            continue
        names = ["--" + f.name.replace("_", "-"), *(aliases or {}).get(f.name, ())]
        default = None if f.default is MISSING else f.default
        shown = "" if default in (None, "") else f" (default: {default})"
        kind = next((t for t in get_args(hints[f.name]) or (hints[f.name],) if t is not type(None)), str)
        if kind is bool and meta["choices"]:  # --validate [fast|full] / --no-validate
            p.add_argument(*names, "--no-" + f.name.replace("_", "-"), action=_OnOffOrChoice, nargs="?",
                           default=None, choices=meta["choices"],
                           help=f"{meta['help']} (default: {'on' if default else 'off'})")
        elif kind is bool:
            p.add_argument(*names, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{meta['help']} (default: {'on' if default else 'off'})")
        elif f.name == "layers":
            p.add_argument("--layer", *names, dest="layers", action="append", metavar="NAME:KEY=VALUE",
                           help=meta["flag_help"])
        else:
            p.add_argument(*names, dest=f.name, type=kind if kind in (int, float) else str,
                           choices=meta["choices"], help=meta["help"] + shown)


class _OnOffOrChoice(argparse.Action):
    """A setting that is on, off or one of its choices: ``--x`` (true), ``--x CHOICE``, ``--no-x`` (false)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"{option_string} takes no value")
            values = False
        setattr(namespace, self.dest, True if values is None else values)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgepack", description="Export models to int8 .tflite/.onnx and prove them.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("export", help="convert a model and write its artifacts")
    _add_model_args(p, "export")
    p.add_argument("--out", default="edgepack_out", help="output folder (default: edgepack_out)")
    p.add_argument("--calib", help="calibration samples: .npy, .npz, a folder of .npy or of images")
    p.add_argument("--train", help="training samples for distillation (default: --calib)")
    p.add_argument("--train-labels", help="labels of --train (.npy or .txt)")
    p.add_argument("--val", help="held-out validation samples (default: the calibration samples)")
    p.add_argument("--val-labels", help="labels of --val (.npy or .txt), for accuracy")
    p.add_argument("--config", help="TOML file with the same keys as these flags (flags given win)")

    p = sub.add_parser("inspect", help="show a model's inputs, outputs, nodes, params and MACs")
    _add_model_args(p, "inspect")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--missing", action="store_true",
                   help="only list the ops edgepack cannot take (op, count, nodes; one line each): "
                        "exit 0 when none, 2 otherwise")

    p = sub.add_parser("validate", help="run artifacts on the target's runtimes and compare with float")
    p.add_argument("artifacts", nargs="+", help=".tflite and/or .onnx files")
    p.add_argument("--data", required=True, help="samples: .npy, .npz, a folder of .npy or of images")
    p.add_argument("--labels", help="labels (.npy or .txt) for accuracy")
    p.add_argument("--reference", help="the float model to compare with (default: a float artifact given)")
    _add_config_flags(p, "validate", aliases={"val_limit": ("--limit",)})  # trust flags: for --reference
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("lint", help="flag patterns that hurt int8 accuracy, with the node and a fix")
    _add_model_args(p, "lint")
    p.add_argument("--calib", help="sample data: enables the range-based checks (outliers, concat ranges)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--fail-on-warn", action="store_true", help="exit with code 1 when a warning is found")

    p = sub.add_parser("targets", help="list the target profiles")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("demo", help="train a small CNN on scikit-learn digits and export it")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--force", action="store_true", help="overwrite existing artifacts")
    return parser


def _config(args):
    """The ExportConfig of a command: the --config file (if any), then every config flag given."""
    from dataclasses import fields

    from .config import ExportConfig
    from .layer_settings import merge_layers

    cfg = ExportConfig.from_toml(args.config) if getattr(args, "config", None) else ExportConfig()
    given = {f.name: getattr(args, f.name) for f in fields(ExportConfig) if getattr(args, f.name, None) is not None}
    if "layers" in given:
        given["layers"] = merge_layers(cfg.layers, given["layers"])
    return cfg.replace(**given)


class _ProgressBar:
    """The rich progress bar the library's ``progress(stage, done, total)`` callback drives."""

    def __init__(self):
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.tasks = {}

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int):
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total or None)
        self.bar.advance(self.tasks[stage], done)


# Path arguments checked before any work: missing, special (FIFO, device) or not-a-file inputs are
# known up front, before a long calibration or training. (dest, what, a folder is allowed)
INPUT_PATHS = (("model", "model", True), ("calib", "calibration data", True), ("val", "validation data", True),
               ("val_labels", "labels", False), ("train", "training data", True),
               ("train_labels", "training labels", False), ("config", "config file", False),
               ("calibration_file", "calibration file", False), ("data", "sample data", True),
               ("labels", "labels", False), ("reference", "reference model", True))


def check_arguments(args) -> None:
    """Every text argument is valid UTF-8 (it is printed and written into reports) and every input
    path is an existing regular file (or folder where one is allowed)."""
    from .input_files import check_file, check_utf8

    for key, value in sorted(vars(args).items()):
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                check_utf8(text, {"model": "model", "artifacts": "artifact"}.get(key, "--" + key.replace("_", "-")))
    for key, what, allow_dir in INPUT_PATHS:
        if getattr(args, key, None) is not None:
            check_file(getattr(args, key), what, allow_dir=allow_dir)
    for path in getattr(args, "artifacts", None) or []:
        check_file(path, "artifact")


@contextlib.contextmanager
def library_noise(verbose: bool):
    """Without -v, warnings (numpy, torch, ...) and native runtime logs stay off stderr: a user error is one
    line, a success is edgepack's own output."""
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow / LiteRT C++ logs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def cmd_export(args) -> int:
    from .api import export

    with _ProgressBar() as progress:
        report = export(args.model, calib=args.calib, out=args.out, val=args.val, val_labels=args.val_labels,
                        train=args.train, train_labels=args.train_labels, config=_config(args), progress=progress)
    for note in report.notes:
        print(note)
    for art in report.artifacts.values():
        print(f"wrote {art['path']} ({art['bytes']:,} bytes)")
    print_checks(report)
    return 0


def cmd_validate(args) -> int:
    from .api import validate_artifacts

    with _ProgressBar() as progress:
        report = validate_artifacts(args.artifacts, args.data, labels=args.labels, reference=args.reference,
                                    config=_config(args), progress=progress)
    if args.json:
        print(report.to_json())
    else:
        print_checks(report)
    if args.fail_on_budget and report.verdict and not report.verdict.fits:
        return 3
    return 0


def cmd_lint(args) -> int:
    from .api import lint

    findings = lint(args.model, args.calib, config=_config(args))
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=2, default=str))
    else:
        for f in findings:
            print(str(f))
        if not findings:
            print("no findings")
    warned = any(f.severity == "warn" for f in findings)
    return 1 if warned and args.fail_on_warn else 0


def cmd_targets(args) -> int:
    from .targets.profile import list_profiles

    profiles = list_profiles()
    if args.json:
        print(json.dumps([{"name": p.name, "kind": p.kind, "runtime": p.runtime, "core": p.core,
                           "clock_mhz": p.clock_mhz, "ram_bytes": p.ram_bytes, "flash_bytes": p.flash_bytes,
                           "threads": p.threads, "aliases": list(p.aliases), "cost_model": p.cost_model}
                          for p in profiles], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="target profiles")
    for col in ("name", "kind", "runtime", "core", "MHz", "RAM", "flash", "aliases", "cost model"):
        table.add_column(col)
    for p in profiles:
        table.add_row(p.name, p.kind, p.runtime, p.core, f"{p.clock_mhz:g}", f"{p.ram_bytes // 1024} KiB",
                      f"{p.flash_bytes // 1024} KiB", ", ".join(p.aliases), p.cost_model)
    Console().print(table)
    return 0


def cmd_inspect(args) -> int:
    from .api import inspect

    if args.missing:
        return _print_missing(args)
    summary = inspect(args.model, config=_config(args))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)
    return 0


def _print_missing(args) -> int:
    """`inspect --missing`: every op of the model edgepack cannot take, one line per op."""
    from .api import load
    from .errors import UnsupportedOpError

    try:
        graph = load(args.model, config=_config(args))
    except UnsupportedOpError as exc:
        missing = getattr(exc, "missing", {exc.op: [exc.node]})
        if args.json:
            print(json.dumps({"missing": missing}, indent=2))
        else:
            for op, nodes in missing.items():
                print(f"{op}: {len(nodes)} node{'s' * (len(nodes) > 1)}: {', '.join(nodes)}")
        return 2
    print(json.dumps({"missing": {}}) if args.json else f"nothing missing: {len(graph.nodes)} nodes, every op supported")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    with _ProgressBar() as progress:
        summary, report = run_demo(args.out, force=args.force, echo=print, progress=progress)
    print_summary(summary)
    for art in report.artifacts.values():
        print(f"wrote {art['path']} ({art['bytes']:,} bytes)")
    print_checks(report)
    print(f"report: {args.out}/export/report.html (and report.json)")
    return 0


COMMANDS = {"export": cmd_export, "inspect": cmd_inspect, "validate": cmd_validate, "lint": cmd_lint,
            "targets": cmd_targets,
            "demo": cmd_demo}


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that clean-up runs (an unfinished output is deleted, --out untouched)."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm) if on_main_thread else None
    try:
        with library_noise(args.verbose):
            check_arguments(args)
            return COMMANDS[args.command](args)
    except EdgepackError as exc:
        if args.debug:
            raise
        print(f"edgepack: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgepack: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("edgepack: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # a bug in edgepack: say so in one line, traceback with --debug
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"edgepack: internal error: {type(exc).__name__}: {first} "
              "(re-run with --debug for the traceback and please report it)", file=sys.stderr)
        return 1
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    sys.exit(main())
