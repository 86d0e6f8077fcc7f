"""explain_dataset: results equal per-batch explain, failures recorded, constant memory, resume
after SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zarr")

import limelight  # noqa: E402
from limelight.streaming import SampleError  # noqa: E402
from tests.conftest import small_torch_cnn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return small_torch_cnn().eval()


def params_for(method, background):
    return {"background": background, "nsamples": 8, "seed": 3} if method == "shap-gradient" else {}


def assert_equal_per_batch(model, batches, run, method, params):
    res = run.results
    assert len(res) == sum(len(b) for b in batches) and not run.failures
    start = 0
    for batch in batches:
        exp = limelight.explain(model, batch, method, **params)
        rows = slice(start, start + len(batch))
        assert np.array_equal(res.values[rows], exp.values.astype(np.float32))
        assert np.array_equal(res.targets[rows], exp.targets) and np.array_equal(res.outputs[rows], exp.outputs)
        if exp.base_values is not None:
            assert np.array_equal(res.base_values[rows], exp.base_values.astype(np.float32))
        start += len(batch)


@pytest.mark.parametrize("method", ["gradcam", "shap-gradient"])
def test_torch_dataloader_equals_per_batch_explain(cnn, tmp_path, method):
    x = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(10)), batch_size=4)
    params = params_for(method, x[:3])
    run = limelight.explain_dataset(cnn, loader, method, out=tmp_path / "m.zarr", batch_size=4, progress=False, **params)
    assert run.images == 10 and run.throughput > 0 and list(run.results.ids[:]) == [str(i) for i in range(10)]
    assert_equal_per_batch(cnn, [x[:4], x[4:8], x[8:]], run, method, params)
    assert run.results.attrs["run"]["method"] == method and run.results.attrs["versions"]["torch"] == torch.__version__


@pytest.mark.parametrize("method", ["gradcam", "shap-gradient"])
def test_keras_iterable_equals_per_batch_explain(twin_cnn, tmp_path, method):
    _, km, _, _, _, _ = twin_cnn
    x = np.random.RandomState(2).rand(7, 16, 16, 3).astype(np.float32)
    params = params_for(method, x[:3])
    source = ((x[i:i + 2], [f"k{j}" for j in range(i, min(i + 2, 7))]) for i in range(0, 7, 2))  # re-batched to 3
    run = limelight.explain_dataset(km, source, method, out=tmp_path / "k.zarr", batch_size=3, progress=False, **params)
    assert list(run.results.ids[:]) == [f"k{i}" for i in range(7)]
    assert_equal_per_batch(km, [x[:3], x[3:6], x[6:]], run, method, params)


def test_a_corrupt_image_is_a_recorded_failure_and_the_rest_is_explained(cnn, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    for i in range(5):
        Image.fromarray((rng.rand(20, 20, 3) * 255).astype(np.uint8)).save(folder / ("sub" if i % 2 else ".") / f"{i}.png")
    bad = folder / "sub" / "2_corrupt.png"
    bad.write_bytes(b"\x89PNG truncated")
    run = limelight.explain_dataset(cnn, folder, out=tmp_path / "f.zarr", batch_size=2, recursive=True, size=16, progress=False)
    res = run.results
    assert run.images == 6 and len(res) == 6
    assert [f for f, _ in run.failures] == [str(bad)] and "not an image Pillow can read" in run.failures[0][1]
    where = list(res.ids[:]).index(str(bad))
    assert res.failed[where] and np.isnan(res.values[where]).all() and res.targets[where] == -1
    ok = np.flatnonzero(~np.asarray(res.failed))
    assert len(ok) == 5 and np.isfinite(res.values[ok]).all()
    summary = run.summary()
    assert "6 images (5 explained, 1 failed)" in summary and str(bad) in summary and "f.zarr" in summary
    assert res.attrs["failures"] == [{"id": str(bad), "error": run.failures[0][1]}]
    with pytest.raises(SampleError, match=r"sample .*2_corrupt.png could not be loaded.*fail_fast"):
        limelight.explain_dataset(cnn, folder, batch_size=2, recursive=True, size=16, progress=False, fail_fast=True)


def test_a_sample_that_fails_alone_is_isolated(cnn):
    x = np.random.RandomState(3).rand(6, 3, 16, 16).astype(np.float32)
    x[4] = np.nan  # limelight rejects NaN inputs: that batch fails, then sample 4 alone
    seen = []
    run = limelight.explain_dataset(cnn, x, batch_size=3, progress=False, on_batch=lambda b, r: seen.append(r))
    assert run.out is None and [f for f, _ in run.failures] == ["4"] and "NaN" in run.failures[0][1]
    assert seen[1].failed.tolist() == [False, True, False]
    for row, sample in ((0, 3), (2, 5)):  # the failing batch's other rows: explained one at a time
        assert np.array_equal(seen[1].values[row], limelight.explain(cnn, x[sample:sample + 1]).values[0])
    with pytest.raises(SampleError, match="sample 4 failed"):
        limelight.explain_dataset(cnn, x, batch_size=3, progress=False, fail_fast=True)
    with pytest.raises(limelight.LimelightError, match="unknown layer"):  # every sample: the setup's fault
        limelight.explain_dataset(cnn, x, batch_size=3, progress=False, layer="nope")


WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np, torch
    import limelight, limelight.streaming, zarr
    from tests.conftest import small_torch_cnn
    torch.manual_seed(0)
    model = small_torch_cnn().eval()
    mode, n, batch, out, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])

    def images():  # generated on the fly: the source holds nothing
        for i in range(0, n, 50):
            if pause:
                time.sleep(pause)
            yield np.random.RandomState(i).rand(min(50, n - i), 3, 32, 32).astype(np.float32)

    if mode == "once":
        limelight.explain(model, np.concatenate(list(images())), "gradcam")
    else:
        limelight.explain_dataset(model, images(), "gradcam", out=out, batch_size=batch, progress=False,
                                  resume=mode == "resume")
    status = open("/proc/self/status").read()
    print(int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) // 1024)
""")


def worker(tmp_path, *args):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=ROOT))
    return [sys.executable, str(script), *map(str, args)]


@pytest.mark.slow
def test_streaming_2000_images_peaks_no_higher_than_200_at_once(tmp_path):
    peak = {}
    for mode, n in (("once", 200), ("stream", 2000)):
        done = subprocess.run(worker(tmp_path, mode, n, 100, tmp_path / "mem.zarr", 0), capture_output=True, text=True,
                              timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        peak[mode] = int(done.stdout.split()[-1])
    print(f"peak RSS (VmHWM): 200 at once {peak['once']} MiB, 2000 streamed {peak['stream']} MiB")
    assert peak["stream"] <= peak["once"] + 16, peak
    assert len(limelight.open_results(tmp_path / "mem.zarr")) == 2000


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    full, killed = tmp_path / "full.zarr", tmp_path / "killed.zarr"
    subprocess.run(worker(tmp_path, "stream", 40, 4, full, 0), check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(worker(tmp_path, "stream", 40, 4, killed, 0.4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(limelight.open_results(killed)) >= 8:
                break
        except limelight.LimelightError:
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = limelight.open_results(killed)
    assert 8 <= len(partial) < 40 and len(partial) % 4 == 0 and not partial.finished
    again = subprocess.run(worker(tmp_path, "stream", 40, 4, killed, 0), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already exists. Pass resume=True" in again.stderr  # no resume: refused
    subprocess.run(worker(tmp_path, "resume", 40, 4, killed, 0), check=True, capture_output=True, timeout=300)
    a, b = limelight.open_results(full), limelight.open_results(killed)
    assert len(a) == len(b) == 40 and b.finished and b.values.zarr.shape[0] == 40
    assert list(b.ids[:]) == [str(i) for i in range(40)]  # in order, none twice
    for name in ("values", "targets", "outputs", "failed"):
        assert np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name))), name


def test_a_written_but_unmarked_chunk_is_redone(cnn, tmp_path):
    x = np.random.RandomState(4).rand(10, 3, 16, 16).astype(np.float32)
    path = tmp_path / "u.zarr"
    reference = limelight.explain_dataset(cnn, x, out=path, batch_size=4, progress=False).results
    want = np.asarray(reference.values)
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    group["values"][4:8] = -7.0  # as if a killed run wrote chunk 1 but never marked it
    group["done"][1] = 0
    assert len(limelight.open_results(path)) == 4
    run = limelight.explain_dataset(cnn, x, out=path, batch_size=4, progress=False, resume=True)
    assert run.resumed == 4 and run.images == 6 and "resumed: 4 rows" in run.summary()
    res = limelight.open_results(path)
    assert len(res) == 10 and np.array_equal(np.asarray(res.values), want)
    with pytest.raises(limelight.LimelightError, match="different run"):
        limelight.explain_dataset(cnn, x, out=path, batch_size=5, progress=False, resume=True)
