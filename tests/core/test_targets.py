import numpy as np
import pytest

from limelight.core.errors import TargetError
from limelight.core.targets import normalize_targets, resolve_targets

OUTPUTS = np.array([[0.1, 0.9, 0.0], [2.0, -1.0, 0.5]], np.float32)


def test_none_is_argmax():
    np.testing.assert_array_equal(resolve_targets(None, OUTPUTS), [1, 0])


def test_int_broadcasts_and_sequence_is_per_sample():
    np.testing.assert_array_equal(resolve_targets(2, OUTPUTS), [2, 2])
    np.testing.assert_array_equal(resolve_targets([0, 2], OUTPUTS), [0, 2])
    np.testing.assert_array_equal(resolve_targets(np.array([1.0, 2.0]), OUTPUTS), [1, 2])


def test_negative_counts_from_the_end():
    np.testing.assert_array_equal(resolve_targets(-1, OUTPUTS), [2, 2])


@pytest.mark.parametrize("bad", [3, -4, [0, 3]])
def test_out_of_range_names_the_class_and_range(bad):
    with pytest.raises(TargetError, match=r"out of range.*\[0, 2\]"):
        resolve_targets(bad, OUTPUTS)


def test_several_targets_per_sample():
    np.testing.assert_array_equal(resolve_targets([[0, 2], [1, -1]], OUTPUTS), [[0, 2], [1, 2]])
    with pytest.raises(TargetError, match=r"target class 3 \(sample 1\)"):
        resolve_targets([[0, 2], [3, 1]], OUTPUTS)


@pytest.mark.parametrize("bad", [[0, 1, 2], [[0], [1], [2]], [[[0]], [[1]]], np.zeros((2, 0), int), ["a", "b"], [0.5, 1.0], True])
def test_wrong_shape_or_type(bad):
    with pytest.raises(TargetError):
        normalize_targets(bad, 2)
