"""The Zarr results store: write, then mark; resume checks; open_results lazy and complete rows only."""

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from limelight import open_results  # noqa: E402
from limelight.streaming.store import BatchResult, ResultStore, StoreError  # noqa: E402

RUN = {"method": "gradcam", "params": {"layer": "conv"}, "batch_size": 4, "model": {"class": "M"}}


def result(start, n, fail=()):
    rng = np.random.RandomState(start)
    failed = np.zeros(n, bool)
    failed[list(fail)] = True
    values = rng.rand(n, 5, 5).astype(np.float32)
    values[failed] = np.nan
    return BatchResult(values, np.arange(start, start + n) % 3, rng.rand(n, 3).astype(np.float32),
                       [f"id{start + i}" for i in range(n)], None, failed, [f"boom {start + i}" for i in fail])


def test_write_then_mark_and_read_back_lazily(tmp_path):
    path = tmp_path / "r.zarr"
    store = ResultStore.create(path, attrs={"run": RUN, "versions": {"torch": "x"}}, capacity=6)
    assert store.completed() == 0 and len(open_results(path)) == 0
    parts = [result(0, 4), result(4, 4, fail=[1]), result(8, 2)]  # grows past capacity 6
    for k, part in enumerate(parts):
        store.write(4 * k, part)
        assert store.completed() == 4 * k + len(part)
    res = open_results(path)
    assert len(res) == 10 and res.values.shape == (10, 5, 5) and res.base_values is None
    assert res.values.chunks == (4, 5, 5) and res.values.zarr.compressors  # one batch per chunk, compressed
    assert np.array_equal(np.asarray(res.values), np.concatenate([p.values for p in parts]), equal_nan=True)
    assert list(res.ids[:]) == [f"id{i}" for i in range(10)] and res.ids[-1] == "id9"
    assert np.array_equal(res.targets[[0, 9]], [0, 0]) and res.outputs[2:5].shape == (3, 3)
    assert res.failures == [("id5", "boom 5")] and res.failed[5] and not res.failed[4]
    assert res.attrs["run"] == RUN and res.attrs["versions"]["torch"] == "x" and "zarr" in res.attrs["versions"]
    with pytest.raises(IndexError):
        res.values[10]
    store.finish(seconds=1.0)
    again = open_results(path)
    assert again.finished and again.values.zarr.shape == (10, 5, 5)  # cut to the rows at the end
    assert again.attrs["failures"] == [{"id": "id5", "error": "boom 5"}]
    with pytest.raises(Exception, match="not one chunk"):
        store.write(2, result(2, 2))


def test_an_unmarked_chunk_is_invisible_and_is_where_resume_starts(tmp_path):
    path = tmp_path / "r.zarr"
    store = ResultStore.create(path, attrs={"run": RUN})
    store.write(0, result(0, 4))
    store.write(4, result(4, 4))
    store.group["done"][1] = 0  # chunk 1 written but (as if killed) never marked
    res = open_results(path)
    assert len(res) == 4 and res.values.shape == (4, 5, 5) and list(res.ids[:]) == ["id0", "id1", "id2", "id3"]
    resumed = ResultStore.create(path, attrs={"run": RUN}, resume=True)
    assert resumed.completed() == 4


def test_existing_store_needs_resume_and_the_same_run(tmp_path):
    path = tmp_path / "r.zarr"
    ResultStore.create(path, attrs={"run": RUN}).write(0, result(0, 4))
    with pytest.raises(StoreError, match="already exists. Pass resume=True .*--resume.* or choose another path"):
        ResultStore.create(path, attrs={"run": RUN})
    with pytest.raises(StoreError, match=r"different run \(params: stored \{'layer': 'conv'\}, now \{'layer': 'fc'\}\)"):
        ResultStore.create(path, attrs={"run": {**RUN, "params": {"layer": "fc"}}}, resume=True)
    assert ResultStore.create(path, attrs={"run": dict(RUN)}, resume=True).completed() == 4
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a limelight results store"):
        open_results(tmp_path / "plain")
    with pytest.raises(StoreError, match="no results store at"):
        open_results(tmp_path / "missing.zarr")
