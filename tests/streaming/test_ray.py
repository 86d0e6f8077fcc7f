"""limelight.ray on a local 2-CPU Ray cluster: the map_batches class equals direct explain,
and explain_on_ray writes the store explain_dataset writes."""

from __future__ import annotations

import os
import pathlib
import sys

# torch (and torchvision) before TensorFlow: the other order segfaults (see tests/conftest.py)
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import limelight  # noqa: E402
import limelight.ray as llray  # noqa: E402
from limelight.core.errors import InputError  # noqa: E402
from tests.conftest import small_torch_cnn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
N, SIZE, BATCH = 64, 16, 16


# -- picklable model factories (actors import this module to unpickle them) -------------------
def make_torch():
    torch.manual_seed(0)
    model = small_torch_cnn()
    model.eval()
    return model


def make_keras():
    """The same architecture in Keras, weights drawn from a seeded NumPy generator (no torch
    import, so a Keras actor starts without it)."""
    import keras

    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.BatchNormalization(epsilon=1e-5),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5),
    ])
    rng = np.random.RandomState(0)
    for layer in model.layers:
        weights = [rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
        if isinstance(layer, keras.layers.BatchNormalization):
            weights[3] = np.abs(weights[3]) + 0.5  # a positive moving variance
        layer.set_weights(weights)
    return model


FACTORIES = {"torch": make_torch, "keras": make_keras}


def feed(framework: str, nhwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)) if framework == "torch" else nhwc


def method_params(method: str, framework: str) -> dict:
    if method == "shap-gradient":
        background = np.random.RandomState(1).rand(8, SIZE, SIZE, 3).astype(np.float32)
        return {"background": feed(framework, background), "nsamples": 8, "seed": 0}
    return {}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs for this module; actors find the tests package."""
    # this module's factories travel by value: actors need not import it (nor torch for Keras)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3",
                                           "KERAS_BACKEND": "tensorflow"}})
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    return (rng.rand(N, SIZE, SIZE, 3) * 255).round().astype(np.uint8)


# -- Explain in map_batches -----------------------------------------------------------------------
@pytest.mark.slow  # a Ray cluster and its actors take tens of seconds to start
@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("method", ["gradcam", "shap-gradient"])
def test_explain_actors_equal_direct_explain(cluster, images, framework, method):
    params = method_params(method, framework)
    ids = [f"img-{i:03d}" for i in range(N)]
    # one block per batch, so Ray's batches are the direct run's (SHAP draws depend on the batch)
    ds = ray.data.from_items([{"image": im, "id": i} for im, i in zip(images, ids, strict=True)],
                             override_num_blocks=N // BATCH)
    out = ds.map_batches(llray.Explain, fn_constructor_kwargs=dict(model_factory=FACTORIES[framework],
                                                                    method=method, **params),
                         batch_size=BATCH, concurrency=2).take_all()
    assert [row["id"] for row in out] == ids
    model = FACTORIES[framework]()
    x = feed(framework, images.astype(np.float32) / 255.0)
    direct = [limelight.explain(model, x[i:i + BATCH], method, **params) for i in range(0, N, BATCH)]
    for name in ("values", "targets", "outputs") + (("base_values",) if method == "shap-gradient" else ()):
        got = np.stack([row[name] for row in out])
        want = np.concatenate([getattr(e, name) for e in direct])
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, err_msg=name)
    if method == "gradcam":
        assert "base_values" not in out[0]


def test_explain_reads_float_images_and_path_column(images):
    floats = images[:8].astype(np.float32) / 255.0
    paths = np.array([f"/data/{i}.png" for i in range(8)])
    out = llray.Explain(make_torch, "gradcam")({"image": floats, "path": paths})
    assert out["path"].tolist() == paths.tolist()
    want = limelight.explain(make_torch(), feed("torch", floats), "gradcam").values
    np.testing.assert_allclose(out["values"], want, atol=1e-6, rtol=0)


# -- explain_on_ray: the same store as explain_dataset ------------------------------------------
def _folder(tmp_path: pathlib.Path, n: int = 40) -> pathlib.Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.RandomState(3)
    for i in range(n):
        Image.fromarray((rng.rand(SIZE, SIZE, 3) * 255).astype(np.uint8)).save(folder / f"im{i:03d}.png")
    (folder / "im017.png").write_bytes(b"not a png")  # a corrupt file: a recorded failure
    return folder


def _assert_same_store(a: pathlib.Path, b: pathlib.Path) -> None:
    ra, rb = limelight.open_results(a), limelight.open_results(b)
    assert len(ra) == len(rb)
    for name in ("values", "targets", "outputs", "base_values", "ids", "failed", "errors"):
        xa, xb = getattr(ra, name), getattr(rb, name)
        assert (xa is None) == (xb is None), name
        if xa is not None:
            xa, xb = np.asarray(xa), np.asarray(xb)
            if xa.dtype.kind == "f":
                np.testing.assert_allclose(xa, xb, atol=1e-6, rtol=0, err_msg=name)
            else:
                assert xa.tolist() == xb.tolist(), name
    assert ra.attrs["run"] == rb.attrs["run"]
    assert ra.failures == rb.failures


@pytest.mark.slow
def test_explain_on_ray_writes_explain_datasets_store_and_resumes(cluster, tmp_path):
    folder = _folder(tmp_path)
    params = method_params("shap-gradient", "torch")  # seeded draws per batch: the batches must match
    run = dict(batch_size=BATCH, size=SIZE, progress=False, **params)
    out, local_out = tmp_path / "ray.zarr", tmp_path / "local.zarr"
    ray_run = llray.explain_on_ray(make_torch, folder, "shap-gradient", out=out, num_workers=2, **run)
    local = limelight.explain_dataset(make_torch(), folder, "shap-gradient", out=local_out, **run)
    assert ray_run.images == local.images == 40
    assert [p for p, _ in ray_run.failures] == [str(folder / "im017.png")]
    assert ray_run.failures == local.failures
    assert "failures (1)" in ray_run.summary()
    _assert_same_store(out, local_out)
    assert list(limelight.open_results(out).ids[:3]) == [str(folder / f"im{i:03d}.png") for i in range(3)]

    import zarr

    zarr.open_group(str(out), mode="r+")["done"][2] = 0  # as if killed before the last chunk's mark
    with pytest.raises(limelight.LimelightError, match="resume"):
        llray.explain_on_ray(make_torch, folder, "shap-gradient", out=out, **run)
    again = llray.explain_on_ray(make_torch, folder, "shap-gradient", out=out, resume=True, **run)
    assert (again.resumed, again.images) == (32, 8)
    _assert_same_store(out, local_out)
    # explain_dataset's store resumes on Ray (the same run attributes): nothing left to do
    done = llray.explain_on_ray(make_torch, folder, "shap-gradient", out=local_out, resume=True, **run)
    assert (done.resumed, done.images) == (40, 0)


# -- without a cluster ----------------------------------------------------------------------------
def test_explain_called_directly_checks_its_inputs(images):
    explain = llray.Explain(make_torch, "gradcam")
    out = explain({"image": images[:4], "id": np.array(["a", "b", "c", "d"])})
    assert out["id"].tolist() == ["a", "b", "c", "d"]
    assert out["values"].shape == (4, SIZE, SIZE)
    with pytest.raises(InputError, match="'image' column"):
        explain({"data": images[:4]})
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = images[0], images[1, :8]
    with pytest.raises(InputError, match="different sizes"):
        explain({"image": ragged})
    with pytest.raises(limelight.LimelightError):
        llray.Explain(make_torch, "no-such-method")


def test_preprocess_callable_and_model_placement(images):
    seen = []

    def prep(x):
        seen.append(x.dtype)
        return feed("torch", x * 0.5)

    out = llray.Explain(make_torch, "gradcam", preprocess=prep, device="cpu")({"image": images[:2]})
    assert seen == [np.float32]
    want = limelight.explain(make_torch(), feed("torch", images[:2] / 255.0 * 0.5), "gradcam")
    np.testing.assert_allclose(out["values"], want.values, atol=1e-6, rtol=0)


def test_an_actor_with_a_gpu_puts_a_torch_model_on_it(monkeypatch):
    moved = []

    class Net(torch.nn.Sequential):  # a user's module, defined outside torch
        def to(self, *args, **kwargs):
            moved.append(args[0])
            return self

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(llray, "_assigned_gpus", lambda: [0])  # map_batches(..., num_gpus=1)
    llray._place(limelight.wrap(Net()), "auto")
    assert moved == ["cuda"]
    monkeypatch.setattr(llray, "_assigned_gpus", lambda: [])  # no GPU requested: stays put
    llray._place(limelight.wrap(Net()), "auto")
    llray._place(limelight.wrap(Net()), None)
    assert moved == ["cuda"]
    llray._place(limelight.wrap(Net()), "cuda:1")
    assert moved == ["cuda", "cuda:1"]


def test_import_limelight_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, limelight; assert 'ray' not in sys.modules and 'limelight.ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow
def test_cli_ray_writes_the_store_of_the_local_run(cluster, tmp_path, capsys):
    """``limelight explain DIR --out X.zarr --ray auto`` (joining this module's cluster) writes
    the store the run without ``--ray`` writes; each actor builds the model from the spec."""
    from tests.test_cli import main, save

    folder = tmp_path / "imgs"
    for i in range(6):
        save(folder / f"{i}.png", seed=i)
    common = ["explain", folder, "--model", f"{__name__}:make_torch", "--method", "gradcam",
              "--batch-size", 4, "--size", SIZE]
    code, _, errors = main(capsys, *common, "--out", tmp_path / "local.zarr")
    assert code == 0 and not errors
    code, summary, errors = main(capsys, *common, "--out", tmp_path / "ray.zarr", "--ray", "auto", "--num-workers", 2)
    assert code == 0 and not errors and "6 images" in summary
    local, on_ray = limelight.open_results(tmp_path / "local.zarr"), limelight.open_results(tmp_path / "ray.zarr")
    assert len(local) == len(on_ray) == 6
    assert list(np.asarray(on_ray.ids)) == list(np.asarray(local.ids))
    for name in ("values", "targets", "outputs"):
        np.testing.assert_allclose(np.asarray(getattr(on_ray, name)), np.asarray(getattr(local, name)),
                                   atol=1e-6, rtol=0, err_msg=name)


@pytest.mark.slow
def test_explain_on_ray_that_fails_in_its_setup_leaves_no_store(cluster, tmp_path):
    """An unknown layer fails every batch's first sample: the LayerError the actor raised
    reaches the caller (Ray Data wrapped it in a UserCodeException before), and the store
    this call made (and the folder it made for it) is removed, so the corrected run can
    start afresh."""
    folder = _folder(tmp_path, n=8)
    out = tmp_path / "made" / "ray.zarr"
    run = dict(batch_size=BATCH, size=SIZE, progress=False)
    with pytest.raises(limelight.LimelightError, match="nope"):
        llray.explain_on_ray(make_torch, folder, "gradcam", out=out, layer="nope", **run)
    assert not out.parent.exists()
    assert llray.explain_on_ray(make_torch, folder, "gradcam", out=out, **run).images == 9  # 8 + im017
