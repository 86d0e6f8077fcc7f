import numpy as np
import pytest

from limelight import datasets


def test_shapes_is_deterministic_and_well_formed():
    a, b = datasets.shapes(64, seed=3), datasets.shapes(64, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (64, 32, 32, 3) and a.images.dtype == np.float32
    assert 0 <= a.images.min() and a.images.max() <= 1
    assert set(a.labels.tolist()) <= {0, 1, 2, 3} and len(set(a.labels.tolist())) == 4
    assert not np.array_equal(datasets.shapes(8, seed=4).images, a.images[:8])


def test_masks_are_exact_and_in_separate_quadrants():
    data = datasets.shapes(200, seed=0, size=64)
    for i in range(len(data)):
        mask, distractor = data.masks[i], data.distractor_masks[i]
        assert mask.any() and distractor.any() and not (mask & distractor).any()
        quadrant = lambda m: {(r // 32, c // 32) for r, c in np.argwhere(m)}  # noqa: E731
        assert len(quadrant(mask)) == 1 and len(quadrant(distractor)) == 1
        assert quadrant(mask) != quadrant(distractor)
        # shape pixels carry the shape's colour: bright, unlike the noise (< 0.25)
        assert data.images[i][mask].min() >= 0.55
        top, left, bottom, right = data.boxes[i]
        assert mask[top:bottom, left:right].sum() == mask.sum()
    fraction = data.masks.mean(axis=(1, 2))
    assert 0.01 < fraction.min() and fraction.max() < 0.2


@pytest.mark.parametrize("label, name", enumerate(datasets.CLASSES))
def test_each_class_draws_its_shape(label, name):
    data = datasets.shapes(400, seed=1)
    areas = data.masks[data.labels == label].sum(axis=(1, 2))
    assert len(areas) > 50 and areas.min() > 5


def test_generation_is_fast_enough_for_thousands():
    data = datasets.shapes(3000, seed=0)  # a few seconds at most; no timing asserted
    assert len(data) == 3000 and data.images.shape == (3000, 32, 32, 3) and data.masks.shape == (3000, 32, 32)
    assert data.labels.shape == (3000,) and data.boxes.shape == (3000, 4)
    assert data.masks.any(axis=(1, 2)).all() and data.distractor_masks.any(axis=(1, 2)).all()
    counts = np.bincount(data.labels, minlength=len(datasets.CLASSES))
    assert counts.min() > 600  # balanced in expectation: 750 each
    assert data.images[data.masks].min() >= 0.55 and 0 <= data.images.min() and data.images.max() <= 1
