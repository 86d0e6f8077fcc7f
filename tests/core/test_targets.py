"""Target resolution (core/targets.py): what users pass as targets= becomes a Target object
whose Array-API scores run in any namespace."""

import array_api_compat.numpy as xp
import array_api_strict
import numpy as np
import pytest

from limelight.core.errors import TargetError
from limelight.core.targets import Classes, Predicted, resolve_target

OUTPUTS = np.array([[0.1, 0.9, 0.0], [2.0, -1.0, 0.5]], np.float32)


def scores(target, outputs=OUTPUTS, namespace=xp):
    target = target.check(outputs.shape[1])
    data = [namespace.asarray(d) for d in target.data()]
    return np.asarray(target.scores(namespace, namespace.asarray(outputs), *data))


def classes(target, outputs=OUTPUTS):
    target = target.check(outputs.shape[1])
    return np.asarray(target.classes(xp, outputs, *target.data()))


def test_none_is_the_predicted_class():
    target = resolve_target(None, 2)
    assert isinstance(target, Predicted) and target.single and target.columns == 1
    np.testing.assert_array_equal(classes(target), [[1], [0]])
    np.testing.assert_array_equal(scores(target), OUTPUTS[[0, 1], [1, 0]][:, None])
    assert isinstance(target.fixed(np.array([[1], [0]])), Classes)


def test_int_broadcasts_and_sequence_is_per_sample():
    np.testing.assert_array_equal(classes(resolve_target(2, 2)), [[2], [2]])
    np.testing.assert_array_equal(classes(resolve_target([0, 2], 2)), [[0], [2]])
    np.testing.assert_array_equal(classes(resolve_target(np.array([1.0, 2.0]), 2)), [[1], [2]])
    np.testing.assert_array_equal(scores(resolve_target([0, 2], 2)), OUTPUTS[[0, 1], [0, 2]][:, None])
    assert resolve_target([0, 2], 2).single


def test_negative_counts_from_the_end():
    np.testing.assert_array_equal(classes(resolve_target(-1, 2)), [[2], [2]])


@pytest.mark.parametrize("bad", [3, -4, [0, 3]])
def test_out_of_range_names_the_class_and_range(bad):
    with pytest.raises(TargetError, match=r"out of range.*\[0, 2\]"):
        resolve_target(bad, 2).check(3)


def test_several_targets_per_sample():
    target = resolve_target([[0, 2], [1, -1]], 2)
    assert not target.single and target.columns == 2
    np.testing.assert_array_equal(classes(target), [[0, 2], [1, 2]])
    np.testing.assert_array_equal(scores(target), OUTPUTS[[[0], [1]], [[0, 2], [1, 2]]])
    with pytest.raises(TargetError, match=r"target class 3 \(sample 1\)"):
        resolve_target([[0, 2], [3, 1]], 2).check(3)
    with pytest.raises(TargetError, match="one output per sample"):
        resolve_target([[0, 2], [1, 1]], 2, multi=False)
    single_column = resolve_target([[0], [2]], 2)
    assert not single_column.single and single_column.columns == 1  # (N, 1) keeps its T axis


@pytest.mark.parametrize("bad", [[0, 1, 2], [[0], [1], [2]], [[[0]], [[1]]], np.zeros((2, 0), int), ["a", "b"], [0.5, 1.0], True])
def test_wrong_shape_or_type(bad):
    with pytest.raises(TargetError):
        resolve_target(bad, 2)


def test_batches_slice_the_data_and_scores_run_on_the_strict_namespace():
    target = resolve_target([[0, 2], [1, 0]], 2)
    assert target[1:].index.tolist() == [[1, 0]]
    assert target[np.array([1, 1, 0])].index.tolist() == [[1, 0], [1, 0], [0, 2]]
    np.testing.assert_array_equal(scores(target, namespace=array_api_strict), scores(target))
    np.testing.assert_array_equal(scores(Predicted(), namespace=array_api_strict), OUTPUTS[[0, 1], [1, 0]][:, None])


def test_a_target_object_must_fit_the_batch():
    with pytest.raises(TargetError, match="holds 3 sample.*has 2"):
        resolve_target(Classes(np.zeros((3, 1), np.int64), single=True), 2)


def test_v1_helpers_keep_working():
    from limelight.core.targets import normalize_targets, resolve_targets

    assert normalize_targets(None, 2) is None
    np.testing.assert_array_equal(normalize_targets(2, 2), [2, 2])
    np.testing.assert_array_equal(resolve_targets(None, OUTPUTS), [1, 0])
    np.testing.assert_array_equal(resolve_targets([[0, 2], [1, -1]], OUTPUTS), [[0, 2], [1, 2]])
    with pytest.raises(TargetError, match="out of range"):
        resolve_targets([0, 3], OUTPUTS)
