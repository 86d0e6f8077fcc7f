"""iter_batches: every source re-batched to batch_size rows, with ids, and start= skipping."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from limelight.core.errors import InputError  # noqa: E402
from limelight.streaming.sources import iter_batches  # noqa: E402


def rows(batches):
    batches = list(batches)
    return batches, [len(b) for b in batches], [i for b in batches for i in b.ids]


def test_a_dataloader_of_tensors_tuples_and_dicts_is_rebatched_with_row_ids():
    x = torch.arange(10 * 3 * 2 * 2, dtype=torch.float32).reshape(10, 3, 2, 2)
    plain = torch.utils.data.DataLoader(x, batch_size=3)
    pairs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.arange(10)), batch_size=3)
    dicts = [{"image": x[i:i + 3], "path": [f"f{j}" for j in range(i, min(i + 3, 10))]} for i in range(0, 10, 3)]
    for source, ids in ((plain, [str(i) for i in range(10)]), (pairs, [str(i) for i in range(10)]),
                        (dicts, [f"f{i}" for i in range(10)])):
        batches, sizes, got = rows(iter_batches(source, batch_size=4))
        assert sizes == [4, 4, 2] and got == ids
        assert all(isinstance(b.inputs, torch.Tensor) for b in batches)  # torch stays torch (no host copy)
        assert torch.equal(torch.cat([b.inputs for b in batches]), x)
        _, sizes, got = rows(iter_batches(source, batch_size=4, start=5))  # resume: rows 5.. only
        assert sizes == [4, 1] and got == ids[5:]


def test_iterables_with_ids_and_masks_and_a_numpy_array():
    x = np.random.RandomState(0).rand(7, 4, 4, 3).astype(np.float32)
    masks = x[..., 0] > 0.5
    source = [(x[:5], [f"a{i}" for i in range(5)], masks[:5]), (x[5:], np.array(["b0", "b1"]), masks[5:])]
    batches, sizes, got = rows(iter_batches(source, batch_size=3))
    assert sizes == [3, 3, 1] and got == ["a0", "a1", "a2", "a3", "a4", "b0", "b1"]
    assert np.array_equal(np.concatenate([b.masks for b in batches]), masks)
    assert np.array_equal(np.concatenate([b.inputs for b in batches]), x)
    batches, sizes, got = rows(iter_batches(x, batch_size=3, start=2, preprocess=lambda a: a * 2))
    assert sizes == [3, 2] and got == ["2", "3", "4", "5", "6"]
    assert np.allclose(np.concatenate([b.inputs for b in batches]), x[2:] * 2)


def test_a_generator_holds_nothing_and_bad_sources_are_clear():
    def gen():
        for i in range(5):
            yield np.full((2, 3), i, np.float32)

    _, sizes, got = rows(iter_batches(gen(), batch_size=3, start=4))
    assert sizes == [3, 3] and got == [str(i) for i in range(4, 10)]
    with pytest.raises(InputError, match="cannot read batches from a int"):
        list(iter_batches(3, batch_size=2))
    with pytest.raises(InputError, match="3 inputs but 2 ids"):
        list(iter_batches([(np.zeros((3, 2)), ["a", "b"])], batch_size=2))
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        list(iter_batches([np.zeros((3, 2))], batch_size=0))


def test_tf_data_batched_and_unbatched():
    tf = pytest.importorskip("tensorflow")
    x = np.random.RandomState(1).rand(9, 4, 4, 3).astype(np.float32)
    names = np.array([f"img{i}" for i in range(9)])
    for ds, ids in ((tf.data.Dataset.from_tensor_slices(x), [str(i) for i in range(9)]),
                    (tf.data.Dataset.from_tensor_slices(x).batch(2), [str(i) for i in range(9)]),
                    (tf.data.Dataset.from_tensor_slices((x, names)).batch(5), list(names)),
                    (tf.data.Dataset.from_tensor_slices({"image": x, "id": names}), list(names))):
        batches, sizes, got = rows(iter_batches(ds, batch_size=4))
        assert sizes == [4, 4, 1] and got == ids
        assert np.array_equal(np.concatenate([b.inputs for b in batches]), x)
        batches, sizes, got = rows(iter_batches(ds, batch_size=4, start=3))
        assert sizes == [4, 2] and got == ids[3:]
        assert np.array_equal(np.concatenate([b.inputs for b in batches]), x[3:])


def test_a_folder_recursive_with_a_corrupt_file(tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    for name in ("a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.rand(12, 10, 3) * 255).astype(np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("skipped: not an image suffix")
    flat = [i for b in iter_batches(tmp_path, batch_size=8) for i in b.row_ids()]
    assert [p.split("/")[-1] for p in flat] == ["a.png", "b.jpg", "broken.png"]
    batches = list(iter_batches(str(tmp_path), batch_size=2, recursive=True, size=8))
    order = [i for b in batches for i in b.row_ids()]
    assert [o[len(str(tmp_path)) + 1:] for o in order] == ["a.png", "b.jpg", "broken.png", "sub/c.png", "sub/deeper/d.png"]
    second = batches[1]
    assert second.ids == [str(tmp_path / "sub/c.png")] and second.failure_rows == [0]
    assert second.failures[0][0] == str(tmp_path / "broken.png") and "not an image Pillow can read" in second.failures[0][1]
    assert second.inputs.shape == (1, 8, 8, 3) and second.inputs.dtype == np.float32  # NHWC in [0, 1]
    resumed = [i for b in iter_batches(str(tmp_path), batch_size=2, recursive=True, size=8, start=3) for i in b.row_ids()]
    assert resumed == order[3:]
    (tmp_path / "nested" / "inner").mkdir(parents=True)
    (tmp_path / "nested" / "inner" / "e.png").write_bytes((tmp_path / "a.png").read_bytes())
    with pytest.raises(InputError, match="no image files in the folder .*--recursive looks in subfolders"):
        list(iter_batches(tmp_path / "nested", batch_size=2))
    assert [len(b) for b in iter_batches(tmp_path / "nested", batch_size=2, recursive=True)] == [1]
