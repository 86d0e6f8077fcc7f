"""Probe fixes in limelight.streaming: the store's lazy rows index as NumPy does; resume checks
the model's weights; a failed first run leaves no store; short per-row targets are a TargetError."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")

import limelight  # noqa: E402
from limelight import open_results  # noqa: E402
from limelight.core.errors import LayerError, TargetError  # noqa: E402
from limelight.streaming.run import SourceError  # noqa: E402
from limelight.streaming.store import BatchResult, ResultStore, StoreError  # noqa: E402

RUN = {"method": "gradcam", "params": {}, "batch_size": 4, "model": {"class": "M"}}


@pytest.fixture
def rows(tmp_path):
    """A store's values ``(9, 3, 5)`` (9 completed rows; a 10th written but unmarked) and the
    same as a NumPy array."""
    rng = np.random.RandomState(0)
    data = rng.rand(12, 3, 5).astype(np.float32)
    store = ResultStore.create(tmp_path / "r.zarr", attrs={"run": RUN})
    for start, n in ((0, 4), (4, 4), (8, 4)):
        part = data[start:start + n]
        store.write(start, BatchResult(part, np.zeros(n, np.int64), part[:, 0, :2], [str(i) for i in range(n)]))
    store.group["done"][2] = 1  # only row 8 of the last chunk counts as complete
    res = open_results(tmp_path / "r.zarr")
    assert len(res) == 9
    return res.values, data[:9]


MASK = np.array([True, False, True, True, False, False, False, True, False])
KEYS = [
    3, -1, -9, np.int64(2), np.array(4), slice(None), slice(2, 7), slice(1, None, 3), slice(None, None, -1),
    slice(7, 1, -2), slice(-2, None, -4), slice(5, 5), slice(100, 200), slice(-100, 3),
    Ellipsis, (Ellipsis, 0), (Ellipsis, 1, 2), (0, Ellipsis), (0, Ellipsis, 4), (slice(None), Ellipsis, -1),
    (Ellipsis, slice(1, 3)), (1, 2, 3, Ellipsis), (), None, (None, 2), (None, Ellipsis, None), (3, None, 1),
    (slice(None, None, -1), None, 0), True, False, (True, 1),
    MASK, (MASK, 1), (Ellipsis, np.array([True, False, True, False, True])), MASK[:, None] & np.ones((9, 3), bool),
    (np.ones((9, 3), bool) & (np.arange(3) == 1), 2), np.zeros(9, bool),
    [0, 5], [5, 0, 5, -1], [[0, 1], [8, 8]], [], np.array([], np.int64),
    ([0, 5], [1, 2]), ([0, 5], slice(None), [1, 4]), (slice(None), [2, 0]), (slice(2, 6), [0, 2], [1, 1]),
    ([[1], [3]], [0, 2]), (2, [0, 1], Ellipsis), ([1, 2], Ellipsis, [0, 4]), (1, slice(None), [0, 3]),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_rows_index_exactly_as_numpy(rows, key):
    lazy, full = rows
    got, want = lazy[key], full[key]
    assert np.shape(got) == want.shape and np.asarray(got).dtype == want.dtype
    assert np.array_equal(got, want)


@pytest.mark.parametrize("key", [9, -10, [0, 9], ([1], [3]), (0, 3), (0, 0, 5), (0, 0, 0, 0), (Ellipsis, Ellipsis),
                                 np.ones(8, bool), 1.5, "a"], ids=repr)
def test_rows_bad_index_is_an_index_error_as_in_numpy(rows, key):
    lazy, full = rows
    with pytest.raises(IndexError):
        full[key]
    with pytest.raises(IndexError):
        lazy[key]


def test_rows_read_only_the_rows_a_key_selects(rows, monkeypatch):
    lazy, _ = rows
    reads = []
    real = type(lazy.zarr).__getitem__
    monkeypatch.setattr(type(lazy.zarr), "__getitem__", lambda self, k: reads.append(k) or real(self, k))
    lazy[7, 1]
    lazy[6:1:-2]
    assert reads == [slice(7, 8), slice(2, 7)]


# -- resume checks the model's weights ---------------------------------------------------------
def net(seed, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval().to(dtype)


def _interrupted_run(path, x):
    def crash(batch, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        limelight.explain_dataset(net(0), x, "gradcam", out=path, batch_size=4, progress=False, on_batch=crash)
    assert len(open_results(path)) == 4


def test_resume_with_other_weights_of_the_same_architecture_is_refused(tmp_path):
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "res.zarr"
    _interrupted_run(path, x)
    with pytest.raises(StoreError, match=r"cannot resume .*model.*weights"):
        limelight.explain_dataset(net(1), x, "gradcam", out=path, batch_size=4, progress=False, resume=True)
    assert len(open_results(path)) == 4  # untouched
    run = limelight.explain_dataset(net(0), x, "gradcam", out=path, batch_size=4, progress=False, resume=True)
    assert (run.resumed, run.images) == (4, 4)  # the same weights (another instance): resumed
    want = limelight.explain(net(0), x, "gradcam").values
    np.testing.assert_allclose(np.asarray(open_results(path).values), want, atol=1e-6, rtol=0)


def test_weights_digest_reads_torch_state_and_keras_weights():
    from limelight.core.model import NumpyModel
    from limelight.streaming.run import _model_description

    def describe(native):
        return _model_description(limelight.wrap(native))

    a, b = describe(net(0)), describe(net(0))
    assert a == b and len(a["weights"]) == 40 and a["parameters"] == 3 * 8 * 9 + 8 + 8 * 5 + 5
    assert describe(net(1))["weights"] != a["weights"]
    half = describe(net(0, torch.bfloat16))  # bfloat16 weights (no NumPy dtype) are digested too
    assert "weights" in half and half["weights"] != a["weights"]
    bn = torch.nn.BatchNorm2d(3)
    before = describe(bn)["weights"]
    bn.running_mean += 1  # buffers are part of the model
    assert describe(bn)["weights"] != before

    import keras

    def dense(value):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.set_weights([np.full((3, 2), value, np.float32), np.zeros(2, np.float32)])
        return model

    assert describe(dense(1.0))["weights"] == describe(dense(1.0))["weights"]
    assert describe(dense(1.0))["weights"] != describe(dense(2.0))["weights"]
    class Host(NumpyModel):
        def predict(self, x, *, batch_size=None):
            return x

    assert "weights" not in _model_description(Host(None))  # a backend that reads none


# -- a run that fails in its setup leaves no store ---------------------------------------------
def test_a_setup_error_leaves_no_store_and_the_corrected_rerun_works(tmp_path):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "new" / "deeper" / "s.zarr"  # its parent folders are made by the run, and removed
    with pytest.raises(LayerError, match="nope"):
        limelight.explain_dataset(net(0), x, "gradcam", layer="nope", out=path, batch_size=4, progress=False)
    assert not (tmp_path / "new").exists()
    run = limelight.explain_dataset(net(0), x, "gradcam", layer="0", out=path, batch_size=4, progress=False)
    assert run.images == 6 and len(open_results(path)) == 6


def test_a_store_with_finished_batches_or_resumed_or_preexisting_is_kept(tmp_path):
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    kw = {"batch_size": 4, "progress": False}
    path = tmp_path / "k.zarr"

    def second(batch, result):
        if batch.row_ids()[0] == "4":
            raise RuntimeError("stop at the second batch")

    with pytest.raises(RuntimeError, match="second batch"):
        limelight.explain_dataset(net(0), x, "gradcam", out=path, on_batch=second, **kw)
    assert len(open_results(path)) == 8  # both batches were written before on_batch stopped it: kept
    empty = tmp_path / "e.zarr"
    _interrupted_run(empty, x)  # 4 rows complete
    zarr.open_group(str(empty), mode="r+")["done"][0] = 0  # as if killed before the first mark
    def broken():
        raise OSError("disk gone")
        yield x

    with pytest.raises(SourceError, match="disk gone"):  # resuming an existing store never removes it
        limelight.explain_dataset(net(0), broken(), "gradcam", out=empty, resume=True, **kw)
    assert (empty / "zarr.json").exists()
    mine = tmp_path / "mine.zarr"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    with pytest.raises(StoreError, match="already exists"):
        limelight.explain_dataset(net(0), x, "gradcam", layer="nope", out=mine, **kw)
    assert (mine / "keep.txt").read_text() == "user data"


# -- per-row targets that do not fit the dataset -----------------------------------------------
def test_too_few_or_too_many_targets_for_a_known_length_fail_before_any_work(tmp_path):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    seen = []
    for source in (x, x.numpy(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)):
        for targets in ([1, 2, 3], [0] * 7):
            with pytest.raises(TargetError, match=f"gives {len(targets)} targets, but the dataset has 6 rows"):
                limelight.explain_dataset(net(0), source, "gradcam", targets=targets, batch_size=2, progress=False,
                                          out=tmp_path / "t.zarr", on_batch=lambda b, r: seen.append(b))
    assert not seen and not (tmp_path / "t.zarr").exists()


def test_a_dataloader_counts_the_rows_it_yields():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    data = torch.utils.data.TensorDataset(x)
    dropped = torch.utils.data.DataLoader(data, batch_size=4, drop_last=True)  # yields rows 0..3
    run = limelight.explain_dataset(net(0), dropped, "gradcam", targets=[0, 1, 2, 3], batch_size=4, progress=False)
    assert run.images == 4
    subset = torch.utils.data.DataLoader(data, batch_size=2, sampler=[5, 0, 3])
    seen = []
    limelight.explain_dataset(net(0), subset, "gradcam", targets=[4, 1, 2], batch_size=2, progress=False,
                              on_batch=lambda b, r: seen.append(r.targets))
    assert np.concatenate(seen).tolist() == [4, 1, 2]


def test_short_targets_for_a_stream_of_unknown_length_name_the_row(tmp_path):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with pytest.raises(TargetError, match=r"gives 3 targets, but the dataset has more rows \(row 3 needs one\)"):
        limelight.explain_dataset(net(0), (x[i:i + 2] for i in range(0, 6, 2)), "gradcam", targets=[1, 2, 3],
                                  batch_size=2, progress=False, out=tmp_path / "u.zarr")
    assert open_results(tmp_path / "u.zarr").targets[:].tolist() == [1, 2]  # the finished batch is kept


@pytest.mark.parametrize(("kw", "match"), [({"batch_size": 0}, "batch_size must be a positive int, got 0"),
                                           ({"batch_size": -2}, "got -2"), ({"batch_size": 2.5}, "got 2.5"),
                                           ({"size": 0}, "size must be None"), ({"size": -5}, "got -5"),
                                           ({"size": (8, 0)}, r"got \(8, 0\)")])
def test_bad_batch_size_or_size_is_a_clear_error_before_any_work(tmp_path, kw, match):
    from PIL import Image

    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(limelight.LimelightError, match=match):
        limelight.explain_dataset(net(0), [str(tmp_path / "a.png")], "gradcam", out=tmp_path / "b.zarr",
                                  progress=False, **kw)
    assert not (tmp_path / "b.zarr").exists()


# -- review follow-ups -------------------------------------------------------------------------
def test_loaders_whose_row_count_is_not_known_up_front_still_take_their_targets():
    """A batch_sampler of one's own, or an unbatched loader over ready batches: their rows are
    not countable without iterating, so targets are checked as the rows come (they were
    refused up front against len(dataset) before)."""
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    data = torch.utils.data.TensorDataset(x)
    sampled = torch.utils.data.DataLoader(data, batch_sampler=[[0, 1], [2, 3]])  # 4 of 8 rows
    assert limelight.explain_dataset(net(0), sampled, "gradcam", targets=[0, 1, 2, 3], batch_size=2,
                                     progress=False).images == 4
    ready = torch.utils.data.DataLoader([(x[:4],), (x[4:],)], batch_size=None)  # 2 samples that are batches
    assert limelight.explain_dataset(net(0), ready, "gradcam", targets=list(range(8)) * 1, batch_size=4,
                                     progress=False).images == 8


def test_the_digest_leaves_out_extra_state_and_runs_without_a_store_compute_none(monkeypatch):
    from limelight.backends.torch import TorchModel

    class WithExtraState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net(0)

        def forward(self, x):
            return self.inner(x)

        def get_extra_state(self):
            return {"note": object()}  # bytes of an object array would be addresses

        def set_extra_state(self, state):
            pass

    a = limelight.wrap(WithExtraState()).weights_digest()
    b = limelight.wrap(WithExtraState()).weights_digest()
    assert a is not None and a == b
    calls = []
    monkeypatch.setattr(TorchModel, "weights_digest", lambda self: calls.append(self) or "d")
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    limelight.explain_dataset(net(0), x, "gradcam", batch_size=4, progress=False)
    assert calls == []  # out=None: nothing to resume, no pass over the weights


def test_a_store_from_before_the_weights_digest_still_resumes(tmp_path):
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "old.zarr"
    _interrupted_run(path, x)
    group = zarr.open_group(str(path), mode="r+")
    run = dict(group.attrs["run"])
    run["model"] = {k: v for k, v in run["model"].items() if k != "weights"}  # as written before
    group.attrs["run"] = run
    again = limelight.explain_dataset(net(0), x, "gradcam", out=path, batch_size=4, progress=False, resume=True)
    assert (again.resumed, again.images) == (4, 4)
