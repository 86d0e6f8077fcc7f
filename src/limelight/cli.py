"""The ``limelight`` command line: ``explain``, ``demo``, ``benchmark``, ``plugins``, ``methods``."""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from . import __version__
from .core.errors import InputError, LimelightError, TargetError, close_matches
from .core.lazy import require
from .core.registry import registry

#: Background rows ``--background`` makes from the inputs when given no folder.
BACKGROUND_ROWS = 8


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
    require("matplotlib.pyplot", "viz", "matplotlib")  # the report's figures
    from .demo.report import run

    report = run(args.out, benchmark_images=args.benchmark_images, benchmark_seeds=args.benchmark_seeds)
    print(f"wrote {report} (open it in a browser)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    """Check, load and compute everything first; write into a temporary folder next to
    ``--out`` and move it into place at the end: a failure leaves nothing behind."""
    import json
    import pathlib
    import time

    import numpy as np

    from .core.api import explain
    from .zoo.specs import load_model

    if _streams(args):
        return _explain_stream(args)
    # the optional packages the command needs, before any work (one line naming the extra)
    tqdm = require("tqdm", "viz").tqdm
    require("PIL.Image", "viz", "Pillow")  # before matplotlib, which needs it too
    plt = require("matplotlib.pyplot", "viz", "matplotlib")
    out = pathlib.Path(args.out)
    _check_writable(out)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    _check_per_method(args, [_method(m)[0] for m in methods])  # unknown methods too, before any work
    paths = _expand(args.images, args.recursive)
    from . import io

    images = [io.load_image(path) for path in paths]  # missing / non-image files fail here
    loaded = load_model(args.model, args.weights)
    fed = _feed(loaded, images, args.size)
    names = loaded.class_names
    targets = _target(args.target, names)
    background = None
    results, timings = {}, {}
    for method in tqdm(methods, desc="explaining", unit="method", disable=None, leave=False):
        name, params = _method(method)
        if _needs_background(name):
            if background is None:
                background = _feed(loaded, _background(args.background, images, args.recursive), args.size)
            params["background"] = background
        start = time.perf_counter()
        if args.layer is not None and _takes(name, "layer"):
            params["layer"] = args.layer
        results[method] = explain(loaded.model, fed, name, targets=targets, **params)
        timings[method] = round(time.perf_counter() - start, 3)

    stems = _unique_stems(paths)
    first = next(iter(results.values()))
    label = (lambda k: names[k]) if names else str
    summary = {
        "model": args.model,
        "images": [str(p) for p in paths],
        "files": dict(zip([str(p) for p in paths], stems, strict=True)),
        "predictions": _predictions(first.outputs, label),
        "targets": {m: e.targets.tolist() for m, e in results.items()},
        "layers": {m: e.params.get("layer") for m, e in results.items()},
        "algorithms": {m: e.params["algorithm"] for m, e in results.items() if "algorithm" in e.params},
        "methods": methods,
        "seconds": timings,
    }
    with _staged(out) as stage:
        from .viz import comparison_grid

        figure = comparison_grid(results, class_names=names)
        figure.savefig(stage / "comparison.png", dpi=110)
        plt.close(figure)
        for method, exp in results.items():
            for index in range(len(exp)):
                fig = exp.plot(index=index, class_names=names)
                fig.savefig(stage / f"{stems[index]}_{method}.png", dpi=110)
                plt.close(fig)
        values: dict[str, Any] = {m: e.values for m, e in results.items()}
        np.savez_compressed(stage / "values.npz", **values)
        (stage / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(results)} method(s) x {len(images)} image(s) to {out}")
    return 0


def _predictions(outputs: Any, label: Callable[[int], str]) -> list[dict[str, Any]]:
    """Each image's top class and its score from ``outputs`` ``(N, K)``; for dense outputs
    ``(N, ..., K)`` (channels-last, classes last) the class with the highest score averaged
    over the output's positions, that mean as ``score`` and ``"dense": True``."""
    import numpy as np

    outputs = np.asarray(outputs)
    dense = outputs.ndim > 2
    scores = outputs.reshape(len(outputs), -1, outputs.shape[-1]).mean(axis=1) if dense else outputs
    top = scores.argmax(axis=-1)
    return [
        {"class": int(k), "name": label(int(k)), "score": float(o[k]), **({"dense": True} if dense else {})}
        for o, k in zip(scores, top, strict=True)
    ]


def _streams(args: argparse.Namespace) -> bool:
    """``--out X.zarr`` (or ``--ray``): stream into a results store instead of writing PNGs."""
    return str(args.out).rstrip("/\\").lower().endswith(".zarr") or args.ray is not None


def _load_native(spec: str, weights: str | None) -> Any:
    """The model ``spec`` names (a picklable model factory for ``--ray``: each worker loads it)."""
    from .zoo.specs import load_model

    return load_model(spec, weights).model


def _explain_stream(args: argparse.Namespace) -> int:
    """``--out X.zarr``: stream the images through :func:`limelight.explain_dataset` (or
    :func:`limelight.ray.explain_on_ray` with ``--ray``) into a Zarr results store, a batch
    at a time, resumable with ``--resume``. Prints the run's summary; exit 1 when some
    images failed (they are recorded in the store), 130 when interrupted."""
    import functools

    from . import io
    from .streaming.run import explain_dataset
    from .streaming.sources import NATIVE, image_paths
    from .streaming.store import open_results
    from .zoo.specs import load_model

    require("PIL.Image", "viz", "Pillow")
    out = pathlib.Path(args.out)
    if not str(out).rstrip("/\\").lower().endswith(".zarr"):
        raise InputError(f"--ray writes a Zarr results store: give --out a path ending in .zarr, not {out}")
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if len(methods) != 1:
        raise InputError(f"a .zarr results store holds one method; got {len(methods)} ({args.method}): run once per method")
    name, params = _method(methods[0])
    _check_per_method(args, [name])  # an unknown method fails before any work
    paths = image_paths(args.images, args.recursive)
    loaded = load_model(args.model, args.weights)
    size: Any = args.size or loaded.input_size
    if loaded.preprocess is not None and size is None:
        size = NATIVE  # the preprocessing sizes each image itself (torchvision)
    if args.layer is not None:  # the method takes one (_check_per_method)
        params["layer"] = args.layer
    if _needs_background(name):
        rows = int(args.background) if args.background and args.background.isdigit() else BACKGROUND_ROWS
        first = []  # the blurred-copies background comes from the first images that load
        for path in paths:
            with contextlib.suppress(LimelightError):
                first.append(io.load_image(path))
            if len(first) >= max(rows, 1):
                break
        if not first:
            raise InputError("no image loads, so there is no background to make from them")
        params["background"] = _feed(loaded, _background(args.background, first, args.recursive), args.size)
    targets = _target(args.target, loaded.class_names)
    try:
        if args.ray is not None:
            try:
                from .ray import explain_on_ray
            except ImportError as exc:
                raise InputError(f"--ray needs limelight.ray and Ray: pip install 'limelight[ray]' ({exc})") from None
            run = explain_on_ray(
                functools.partial(_load_native, args.model, args.weights), paths, name, out=out,
                batch_size=args.batch_size, address=None if args.ray == "local" else args.ray,
                num_workers=args.num_workers, num_gpus_per_worker=args.num_gpus_per_worker,
                preprocess=loaded.preprocess, resume=args.resume, fail_fast=args.fail_fast,
                progress=False if args.quiet else None, size=size, targets=targets, **params,
            )
        else:
            run = explain_dataset(
                loaded.model, paths, name, out=out, batch_size=args.batch_size, resume=args.resume,
                fail_fast=args.fail_fast, progress=False if args.quiet else None,
                preprocess=loaded.preprocess, size=size, targets=targets, **params,
            )
    except KeyboardInterrupt:
        if not out.exists():  # interrupted before its first batch was stored: nothing was kept
            print(f"limelight: interrupted before any image was stored; {out} was not written", file=sys.stderr)
            return 130
        done = len(open_results(out))
        print(f"limelight: interrupted; {done} image(s) are complete in {out}: rerun with --resume to go on",
              file=sys.stderr)
        return 130
    print(run.summary())
    return 1 if run.failures else 0


def _check_writable(out: pathlib.Path) -> None:
    """``--out`` must be a folder (or not exist yet) under a folder this process may write."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is a file, not a folder")
    target = out if out.exists() else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: permission denied (cannot write in {target})")


@contextlib.contextmanager
def _staged(out: pathlib.Path) -> Iterator[pathlib.Path]:
    """A temporary folder next to ``out``, moved into place when the block succeeds and
    removed when it fails. Into an existing ``out``, files are moved one by one (replacing
    same-named ones; nothing else there is touched)."""
    try:
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
        stage = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.absolute().parent))
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield stage
        if out.is_dir():
            for item in stage.iterdir():
                os.replace(item, out / item.name)
            stage.rmdir()
        else:
            os.replace(stage, out)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise InputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _expand(arguments: Sequence[str], recursive: bool) -> list[pathlib.Path]:
    """Files as given; a folder -> the images inside (``--recursive``: and below); a glob
    pattern that names no file -> its matches (:func:`~limelight.streaming.sources.image_paths`)."""
    from .streaming.sources import image_paths

    return [pathlib.Path(p) for p in image_paths(list(arguments), recursive)]


def _unique_stems(paths: Sequence[pathlib.Path]) -> list[str]:
    """Output-name stems: the file's stem; where two inputs share it, the file name with its
    suffix (``cat_png``, ``cat_jpg``); then a counter."""
    stems = collections.Counter(p.stem for p in paths)
    names = [p.stem if stems[p.stem] == 1 else p.name.replace(".", "_") for p in paths]
    counts, seen = collections.Counter(names), collections.Counter[str]()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if counts[name] == 1 else f"{name}-{seen[name]}")
    return unique


def _feed(loaded: Any, images: Sequence[Any], size: int | None) -> Any:
    """What the model is fed for ``(H, W, 3)`` RGB images in [0, 1].

    A model whose preprocessing sets the size itself (torchvision: resize the short side,
    centre crop) gets each image at its own size through exactly that preprocessing. Else
    the images are resized to ``--size``, else to the model's declared input size, else
    224, then preprocessed (or laid out for the framework).
    """
    import numpy as np

    from . import io

    if loaded.preprocess is not None and loaded.input_size is None:
        return np.concatenate([np.asarray(loaded.preprocess(image[None])) for image in images])
    shape = (size, size) if size else loaded.input_size or (224, 224)
    batch = np.stack([io.load_image(image, shape) for image in images])
    if loaded.preprocess is not None:
        return loaded.preprocess(batch)
    return batch.transpose(0, 3, 1, 2).copy() if loaded.framework == "torch" else batch


def _target(given: str | None, names: Sequence[str] | None) -> int | None:
    """``--target``: a class index, or a class name looked up in the model's class names."""
    if given is None or given == "auto":
        return None
    try:
        return int(given)
    except ValueError:
        pass
    if not names:
        raise TargetError(f"--target {given!r}: this model has no class names; give a class index")
    lowered = [n.lower() for n in names]
    if given.lower() in lowered:
        return lowered.index(given.lower())
    raise TargetError(f"--target {given!r} is not one of the model's class names." + close_matches(given, names))


def _takes(method: str, param: str) -> bool:
    """Whether the explainer ``method`` has the parameter ``param``."""
    return param in registry.explainer(method).defaults


def _needs_background(method: str) -> bool:
    return _takes(method, "background")


#: Options that go only to the methods with the parameter: (option, attribute, parameter).
PER_METHOD = (("--layer", "layer", "layer"), ("--background", "background", "background"))


def _check_per_method(args: argparse.Namespace, methods: Sequence[str]) -> None:
    """Each per-method option given must suit at least one of ``methods`` (each goes only to
    the methods that take it); an unknown method is an error here, before any work."""
    if not methods:
        raise InputError(f"--method {args.method!r} names no method; e.g. --method gradcam or gradcam,shap.")
    for method in methods:
        registry.explainer(method)
    for option, attribute, param in PER_METHOD:
        if getattr(args, attribute) is None or any(_takes(m, param) for m in methods):
            continue
        takers = [n for n, cls in registry.explainers().items() if param in cls.defaults]
        raise InputError(
            f"{option}: none of the methods {', '.join(methods)} takes a {param}; it is for "
            f"{', '.join(takers)}. Leave {option} out, or add such a method."
        )


def _background(given: str | None, images: Sequence[Any], recursive: bool) -> list[Any]:
    """``--background``: a folder or glob of images, or ``N`` (default
    :data:`BACKGROUND_ROWS`): the inputs blurred, N rows."""
    from . import io

    if given is not None and not given.isdigit():
        return [io.load_image(p) for p in _expand([given], recursive)]
    rows = BACKGROUND_ROWS if given is None else int(given)
    if rows < 1:
        raise InputError("--background N needs N >= 1")
    return [_blurred(images[i % len(images)], i // len(images), -(-rows // len(images))) for i in range(rows)]


def _blurred(image: Any, step: int, steps: int) -> Any:
    """``image`` under a Gaussian blur whose radius runs from 1/16 to 1/4 of its short side
    over ``steps`` steps."""
    import numpy as np

    Image = require("PIL.Image", "viz", "Pillow")
    ImageFilter = require("PIL.ImageFilter", "viz", "Pillow")
    side = min(image.shape[:2])
    radius = side / 16 * (4 ** (step / (steps - 1)) if steps > 1 else 2.0)
    pil = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255.0


def _method(name: str) -> tuple[str, dict[str, Any]]:
    """CLI method names are the registered explainer names (``shap`` as in the API: DeepSHAP
    where the model allows it, else expected gradients)."""
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


class _Parser(argparse.ArgumentParser):
    """Usage errors as one ``limelight: error:`` line (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"limelight: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # --debug works before and after the subcommand: the subcommands' copy leaves the
    # attribute alone unless given (SUPPRESS), so the top-level default stays.
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    parser = _Parser(prog="limelight", description="Explain image classifiers.")
    parser.add_argument("--version", action="version", version=f"limelight {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plugins", parents=[common], help="list installed plugins and what each provides").set_defaults(run=_plugins)
    sub.add_parser("methods", parents=[common], help="list the registered explanation methods").set_defaults(run=_methods)
    ex = sub.add_parser("explain", parents=[common], help="explain images with one or more methods; write PNGs, values and a summary")
    ex.add_argument("images", nargs="+", help="image files, folders (the images inside) or glob patterns")
    ex.add_argument("--recursive", "-r", action="store_true", help="folders: also the images in subfolders; globs: ** matches subfolders")
    ex.add_argument("--model", required=True, help="torchvision:NAME, keras:NAME, file.pt (TorchScript), file.keras, or package.module:factory")
    ex.add_argument("--weights", default=None, help="'none' for random weights (offline), a local weights file, or default: the source's pretrained weights")
    ex.add_argument("--method", default="gradcam", help="comma-separated registered methods (default gradcam; see `limelight methods`)")
    ex.add_argument("--target", default=None, help="class index or class name to explain (default: the predicted class)")
    ex.add_argument("--layer", default=None, help="layer for CAM methods (default: the last spatial layer)")
    ex.add_argument("--background", default=None, metavar="DIR|N", help=f"SHAP background: a folder or glob of images, or N blurred copies of the inputs (default {BACKGROUND_ROWS})")
    ex.add_argument("--size", type=_positive_int, default=None, help="resize inputs to SIZE x SIZE (default: the model's input size, else 224)")
    ex.add_argument("--out", default="limelight-out", help="output folder (PNGs, values, summary), or a path ending in .zarr: "
                    "stream the images a batch at a time into a Zarr results store (limelight.open_results reads it)")
    ex.add_argument("--batch-size", type=_positive_int, default=32, help=".zarr: images per batch and per store chunk (default 32)")
    ex.add_argument("--resume", action="store_true", help=".zarr: continue the run already in --out from its last complete batch")
    ex.add_argument("--fail-fast", action="store_true", help=".zarr: stop at the first image that fails (default: record it and go on)")
    ex.add_argument("--quiet", "-q", action="store_true", help=".zarr: no progress bar (the summary is still printed)")
    ex.add_argument("--ray", default=None, metavar="ADDRESS|auto|local", help="run on a Ray cluster (auto: the running one; local: start one) into --out X.zarr")
    ex.add_argument("--num-workers", type=_positive_int, default=2, help="--ray: workers, each holding a model (default 2)")
    ex.add_argument("--num-gpus-per-worker", type=_non_negative_float, default=0, help="--ray: GPUs per worker (default 0)")
    ex.set_defaults(run=_explain)
    bench = sub.add_parser("benchmark", parents=[common], help="every explainer x every metric on the shapes dataset, both frameworks")
    bench.add_argument("--images", type=_positive_int, default=48, help="images per draw and framework (default 48)")
    bench.add_argument("--seeds", type=_positive_int, default=3, help="dataset draws pooled, each with its own redraw seed (default 3)")
    bench.add_argument("--out", default=None, help="also write the Markdown report here")
    bench.set_defaults(run=_benchmark)
    demo = sub.add_parser("demo", parents=[common], help="explain the embedded demo model in PyTorch and Keras; write report.html")
    demo.add_argument("--out", default="limelight-demo", help="output folder (default: limelight-demo)")
    demo.add_argument("--benchmark-images", type=_positive_int, default=16, help="images per draw in the comparative analysis (default 16)")
    demo.add_argument("--benchmark-seeds", type=_positive_int, default=1, help="dataset draws in the comparative analysis (default 1)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``limelight`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (LimelightError, OSError) as exc:  # OSError: an unreadable folder, a full disk
        if args.debug:
            raise
        print(f"limelight: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
