"""Metrics against independent implementations on the same arrays: Quantus (localisation,
ROAD's imputation) and SciPy (Spearman with ties)."""

import numpy as np
import pytest

from limelight.core.registry import registry
from limelight.evaluation import noisy_linear_imputation, spearman


def _masks_and_maps(n=12, size=16, seed=0):
    rng = np.random.RandomState(seed)
    maps = rng.rand(n, size, size)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        top, left = rng.randint(0, size - 6, size=2)
        masks[i, top : top + rng.randint(2, 6), left : left + rng.randint(2, 6)] = True
    maps[: n // 2] += 0.5 * masks[: n // 2]  # half of them lean on the mask, so hits and misses both occur
    return maps, masks


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("pointing-game", "PointingGame"), ("relevance-mass", "RelevanceMassAccuracy"),
     ("relevance-rank", "RelevanceRankAccuracy")],
)
def test_localisation_metrics_equal_quantus(ours, theirs):
    quantus = pytest.importorskip("quantus")
    maps, masks = _masks_and_maps()
    expected = getattr(quantus, theirs)(disable_warnings=True)(
        model=None, x_batch=np.zeros((len(maps), 1, 16, 16), np.float32), y_batch=np.zeros(len(maps), int),
        a_batch=maps[:, None].astype(np.float32), s_batch=masks[:, None].astype(np.float32), channel_first=True,
    )
    got = registry.metrics()[ours]()(maps, masks=masks)
    np.testing.assert_allclose(got, np.asarray(expected, np.float64), rtol=1e-5, atol=1e-6)
    assert 0 < got.mean() < 1  # the arrays exercise both outcomes


def test_road_imputation_equals_quantus_and_the_road_reference():
    quantus_perturb = pytest.importorskip("quantus.functions.perturb_func")
    rng = np.random.RandomState(1)
    image = rng.rand(12, 10, 3)
    removed = rng.rand(12, 10) < 0.6
    removed[0, :] = True  # a removed border row: fewer neighbours there
    ours = noisy_linear_imputation(image, removed, noise=0.0)
    theirs = quantus_perturb.noisy_linear_imputation(
        image.transpose(2, 0, 1).copy(), np.flatnonzero(removed), noise=0.0
    ).transpose(1, 2, 0)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    np.testing.assert_array_equal(ours[~removed], image[~removed])


def test_road_imputation_by_hand():
    flat = np.full((5, 5, 2), 0.7)
    removed = np.zeros((5, 5), bool)
    removed[1:4, 1:4] = True
    np.testing.assert_allclose(noisy_linear_imputation(flat, removed, noise=0.0), flat)  # constants stay
    ramp = np.tile(np.arange(5.0)[None, :, None], (5, 1, 1))  # linear in x: every weighted mean is exact
    np.testing.assert_allclose(noisy_linear_imputation(ramp, removed, noise=0.0), ramp, atol=1e-12)
    one = np.zeros((3, 3, 1))
    one[1, 1] = 1.0
    hole = np.zeros((3, 3), bool)
    hole[1, 1] = True
    assert noisy_linear_imputation(one, hole, noise=0.0)[1, 1, 0] == pytest.approx(0.0)  # its neighbours are 0
    noisy = noisy_linear_imputation(flat, removed, noise=0.1, rng=np.random.RandomState(0))
    assert 0.02 < noisy[removed].std() < 0.2 and np.array_equal(noisy[~removed], flat[~removed])
    with pytest.raises(ValueError, match="every pixel"):
        noisy_linear_imputation(flat, np.ones((5, 5), bool))


def test_spearman_equals_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.RandomState(2)
    a = np.maximum(rng.randn(6, 50), 0)  # ReLU'd: about half are tied zeros
    b = np.maximum(rng.randn(6, 50), 0)
    b[1] = 3 * a[1]
    a[2] = np.round(a[2])
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(spearman(a, b), expected, atol=1e-12)
    assert spearman(a, b)[1] == pytest.approx(1.0)
