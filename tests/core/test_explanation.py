import dataclasses

import numpy as np
import pytest

from limelight import Explanation
from limelight.core.errors import InputError


def make(**kw):
    rng = np.random.RandomState(0)
    fields = dict(
        method="gradcam",
        values=rng.rand(3, 8, 8).astype(np.float32),
        targets=np.array([1, 0, 2]),
        outputs=rng.rand(3, 4).astype(np.float32),
        inputs=rng.rand(3, 8, 8, 3).astype(np.float32),
        params={"layer": "layer4", "relu": True, "fn": object()},
        framework="torch",
    )
    fields.update(kw)
    return Explanation(**fields)


def test_frozen_and_read_only():
    exp = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.method = "x"
    with pytest.raises(ValueError):
        exp.values[0, 0, 0] = 1.0
    assert exp.targets.dtype == np.int64 and exp.outputs.dtype == np.float32


def test_keyword_only_required_fields():
    with pytest.raises(TypeError):
        Explanation("gradcam", np.zeros((1, 2, 2)), np.zeros(1), np.zeros((1, 2)))  # type: ignore[misc]


def test_shapes_are_checked():
    with pytest.raises(InputError, match="targets"):
        make(targets=np.array([1, 2]))
    with pytest.raises(InputError, match="outputs"):
        make(outputs=np.zeros((2, 4)))


def test_save_load_round_trip(tmp_path):
    exp = make()
    exp.save(tmp_path / "e.npz")
    back = Explanation.load(tmp_path / "e.npz")
    for name in ("values", "targets", "outputs", "inputs"):
        np.testing.assert_array_equal(getattr(back, name), getattr(exp, name))
    assert back.base_values is None
    assert back.method == "gradcam" and back.framework == "torch"
    assert back.params == {"layer": "layer4", "relu": True}  # the non-JSON value is dropped


def test_indexing_keeps_batch_axis():
    exp = make()
    one = exp[1]
    assert len(one) == 1 and one.values.shape == (1, 8, 8)
    assert one.targets.tolist() == [0]
    assert len(exp[1:]) == 2


@pytest.mark.parametrize("index", [-1, -3, 0, 2, np.int64(-2), np.int32(1)])
def test_integer_indexing_follows_python(index):
    exp = make()
    expected = list(range(3))[index]
    one = exp[index]
    assert len(one) == 1
    assert one.targets.tolist() == [exp.targets[expected]]
    np.testing.assert_array_equal(one.values[0], exp.values[expected])


@pytest.mark.parametrize("index", [3, -4, 100])
def test_index_out_of_range_raises(index):
    with pytest.raises(IndexError, match="out of range"):
        make()[index]


@pytest.mark.parametrize("index", [slice(None, None, -1), slice(-2, None), slice(None, None, 2), slice(5, 9)])
def test_slices_follow_python(index):
    exp = make()
    assert make()[index].targets.tolist() == exp.targets.tolist()[index]


def test_non_integer_index_is_a_type_error():
    with pytest.raises(TypeError, match="integers or slices"):
        make()[1.0]


def test_params_are_read_only():
    given = {"layer": "layer4"}
    exp = make(params=given)
    with pytest.raises(TypeError):
        exp.params["layer"] = "other"  # type: ignore[index]
    given["layer"] = "changed"  # the explanation keeps its own copy
    assert exp.params == {"layer": "layer4"} and exp.params["layer"] == "layer4"
    changed = dataclasses.replace(exp, params={**exp.params, "algorithm": "x"})
    assert changed.params == {"layer": "layer4", "algorithm": "x"} and exp.params == {"layer": "layer4"}
    assert exp[0].params == exp.params


def test_pickle_and_copy_survive_read_only_params():
    import copy
    import pickle

    exp = make(params={"layer": "layer4"})
    for back in (pickle.loads(pickle.dumps(exp)), copy.deepcopy(exp), copy.copy(exp)):
        assert back.params == {"layer": "layer4"}
        np.testing.assert_array_equal(back.values, exp.values)
        with pytest.raises(TypeError):
            back.params["layer"] = "x"  # type: ignore[index]
