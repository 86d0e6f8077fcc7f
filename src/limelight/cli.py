"""The ``limelight`` command line: ``explain``, ``demo``, ``benchmark``, ``plugins``, ``methods``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

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

    report = run(args.out, benchmark_images=args.benchmark_images, benchmark_seeds=args.benchmark_seeds)
    print(f"wrote {report} (open it in a browser)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    """Compute everything first, write only at the end: a failure leaves nothing half-written."""
    import json
    import pathlib
    import time

    import numpy as np

    from . import io
    from .core.api import explain
    from .zoo.specs import load_model

    images = [io.load_image(path) for path in args.images]  # missing / non-image files fail here
    loaded = load_model(args.model, args.weights)
    size = loaded.input_size or (args.size, args.size)
    batch = np.stack([io.load_image(image, size if loaded.preprocess is None or loaded.input_size else 256) for image in images])
    fed = loaded.preprocess(batch) if loaded.preprocess is not None else _as_fed(batch, loaded.framework)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    targets = None if args.target in (None, "auto") else int(args.target)
    results, timings = {}, {}
    from tqdm import tqdm

    for method in tqdm(methods, desc="explaining", unit="method", disable=None, leave=False):
        name, params = _method(method)
        start = time.perf_counter()
        results[method] = explain(loaded.model, fed, name, targets=targets, layer=args.layer, **params)
        timings[method] = round(time.perf_counter() - start, 3)

    import matplotlib.pyplot as plt

    from .viz import comparison_grid

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = loaded.class_names
    figure = comparison_grid(results, class_names=names)
    figure.savefig(out / "comparison.png", dpi=110)
    plt.close(figure)
    for method, exp in results.items():
        for index in range(len(exp)):
            fig = exp.plot(index=index, class_names=names)
            fig.savefig(out / f"{pathlib.Path(args.images[index]).stem}_{method}.png", dpi=110)
            plt.close(fig)
    values: dict[str, Any] = {m: e.values for m, e in results.items()}
    np.savez_compressed(out / "values.npz", **values)
    first = next(iter(results.values()))
    label = (lambda k: names[k]) if names else str
    summary = {
        "model": args.model,
        "images": list(args.images),
        "predictions": [{"class": int(k), "name": label(int(k)), "score": float(o[k])} for o, k in zip(first.outputs, first.outputs.argmax(1), strict=True)],
        "targets": {m: e.targets.tolist() for m, e in results.items()},
        "layers": {m: e.params.get("layer") for m, e in results.items()},
        "methods": methods,
        "seconds": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(results)} method(s) x {len(images)} image(s) to {out}")
    return 0


def _as_fed(batch: Any, framework: str) -> Any:
    return batch.transpose(0, 3, 1, 2).copy() if framework == "torch" else batch


def _method(name: str) -> tuple[str, dict[str, Any]]:
    """CLI method names: ``shap`` means model-agnostic Partition SHAP on the image (no
    background data needed); every registered explainer name works as is."""
    if name == "shap":
        return "shap-partition", {"max_evals": 300}
    return name, {}


def _benchmark(args: argparse.Namespace) -> int:
    import pathlib

    from .evaluation.benchmark import report, run

    text = report(run(n_images=args.images, seeds=args.seeds))
    print(text)
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limelight", description="Explain image classifiers.")
    parser.add_argument("--version", action="version", version=f"limelight {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plugins", help="list installed plugins and what each provides").set_defaults(run=_plugins)
    sub.add_parser("methods", help="list the registered explanation methods").set_defaults(run=_methods)
    ex = sub.add_parser("explain", help="explain images with one or more methods; write PNGs, values and a summary")
    ex.add_argument("images", nargs="+", help="image files")
    ex.add_argument("--model", required=True, help="torchvision:NAME, keras:NAME, file.pt (TorchScript), file.keras, or package.module:factory")
    ex.add_argument("--weights", default=None, help="'none' for random weights (offline); default: the source's pretrained weights")
    ex.add_argument("--method", default="gradcam", help="comma-separated methods (default gradcam; 'shap' = partition SHAP)")
    ex.add_argument("--target", default=None, help="class index to explain (default: the predicted class)")
    ex.add_argument("--layer", default=None, help="layer for CAM methods (default: the last spatial layer)")
    ex.add_argument("--size", type=int, default=224, help="input size when the model does not say (default 224)")
    ex.add_argument("--out", default="limelight-out", help="output folder")
    ex.set_defaults(run=_explain)
    bench = sub.add_parser("benchmark", help="every explainer x every metric on the shapes dataset, both frameworks")
    bench.add_argument("--images", type=int, default=48, help="images per draw and framework (default 48)")
    bench.add_argument("--seeds", type=int, default=3, help="dataset draws pooled, each with its own redraw seed (default 3)")
    bench.add_argument("--out", default=None, help="also write the Markdown report here")
    bench.set_defaults(run=_benchmark)
    demo = sub.add_parser("demo", help="explain the embedded demo model in PyTorch and Keras; write report.html")
    demo.add_argument("--out", default="limelight-demo", help="output folder (default: limelight-demo)")
    demo.add_argument("--benchmark-images", type=int, default=16, help="images per draw in the comparative analysis (default 16)")
    demo.add_argument("--benchmark-seeds", type=int, default=1, help="dataset draws in the comparative analysis (default 1)")
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
