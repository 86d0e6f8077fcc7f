"""The ``limelight`` command line: ``limelight demo``, ``limelight plugins``, ``limelight methods``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .core.errors import LimelightError
from .core.registry import registry


def _plugins(args: argparse.Namespace) -> int:
    for info in registry.plugins():
        origin = info.source if info.distribution is None else f"{info.source}, {info.distribution} {info.version}"
        status = f"FAILED: {info.error}" if info.error else info.provides
        print(f"{info.name}  ({origin})\n    {status}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    for name, cls in registry.explainers().items():
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:<14} {doc[0] if doc else ''}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo.report import run

    report = run(args.out)
    print(f"wrote {report} (open it in a browser)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limelight", description="Explain image classifiers.")
    parser.add_argument("--version", action="version", version=f"limelight {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plugins", help="list installed plugins and what each provides").set_defaults(run=_plugins)
    sub.add_parser("methods", help="list the registered explanation methods").set_defaults(run=_methods)
    demo = sub.add_parser("demo", help="explain the embedded demo model in PyTorch and Keras; write report.html")
    demo.add_argument("--out", default="limelight-demo", help="output folder (default: limelight-demo)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``limelight`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except LimelightError as exc:
        if args.debug:
            raise
        print(f"limelight: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
