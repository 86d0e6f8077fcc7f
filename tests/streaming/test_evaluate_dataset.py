"""``limelight.evaluate_dataset``: streamed batch by batch, it gives what ``limelight.evaluate``
gives on all images at once, whatever the batch size, with correct SEs and seeded bootstrap CIs."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow (the other order can crash)

import limelight  # noqa: E402
from limelight import datasets, demo  # noqa: E402
from limelight.core.errors import LimelightError  # noqa: E402
from limelight.streaming.evaluate import DatasetEvaluation, evaluate_dataset, summarise  # noqa: E402

METRICS = ["pointing-game", "relevance-mass", "deletion", "sparseness"]
N = 30


@pytest.fixture(scope="module")
def data():
    return datasets.shapes(N, seed=5)


@pytest.fixture(scope="module")
def model():
    return demo.torch_model()


def nchw(images: np.ndarray):
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def chunks(data, size: int):
    """The dataset as an iterable of ``(inputs, ids, masks)`` batches of ``size`` (re-batched
    by ``evaluate_dataset`` to its own ``batch_size``)."""
    for i in range(0, len(data), size):
        yield nchw(data.images[i:i + size]), [f"img{j}" for j in range(i, min(i + size, len(data)))], \
            data.masks[i:i + size]


@pytest.fixture(scope="module")
def streamed(data, model):
    return evaluate_dataset(model, list(chunks(data, 7)), ["gradcam", "gradcam++"], METRICS, batch_size=8,
                            n_boot=200, seed=0, progress=False)


def test_streamed_means_equal_evaluate_on_all_images_at_once(data, model, streamed):
    whole = limelight.evaluate(model, nchw(data.images), ["gradcam", "gradcam++"], METRICS, masks=data.masks, seed=0)
    assert list(streamed.scores) == list(whole.scores) == ["gradcam", "gradcam++", "random", "centre", "edge"]
    assert streamed.n == N
    table = streamed.table()
    for row, cols in whole.table().items():
        assert list(table[row]) == METRICS
        for metric, mean in cols.items():
            assert abs(table[row][metric] - mean) <= 1e-6, (row, metric)
            np.testing.assert_allclose(streamed.scores[row][metric], whole.scores[row][metric], atol=1e-6)
    assert streamed.higher_is_better == whole.higher_is_better
    assert streamed.output_kinds == whole.output_kinds == {"deletion": "logits"}


def test_results_do_not_depend_on_the_batch_size(data, model, streamed):
    for batch_size in (1, 13, N):
        other = evaluate_dataset(model, list(chunks(data, 7)), ["gradcam", "gradcam++"], METRICS,
                                 batch_size=batch_size, n_boot=200, progress=False)
        for row, cols in streamed.scores.items():
            for metric, values in cols.items():
                np.testing.assert_allclose(other.scores[row][metric], values, atol=1e-6, err_msg=f"{row} {metric}")


def test_standard_error_is_the_sample_std_over_sqrt_n(streamed):
    stats = streamed.stats()
    for row, cols in streamed.scores.items():
        for metric, values in cols.items():
            s = stats[row][metric]
            assert s.n == N
            assert s.mean == pytest.approx(values.mean(), abs=1e-12)
            assert s.se == pytest.approx(values.std(ddof=1) / math.sqrt(N), rel=1e-12, abs=1e-15)


def test_bootstrap_ci_contains_the_mean_and_is_seeded(data, model, streamed):
    stats = streamed.stats()
    for row, cols in stats.items():
        for metric, s in cols.items():
            assert s.low <= s.mean <= s.high, (row, metric, s)
            assert s.level == 0.95
    again = evaluate_dataset(model, list(chunks(data, 7)), ["gradcam", "gradcam++"], METRICS, batch_size=8,
                             n_boot=200, seed=0, progress=False)
    assert again.stats() == stats  # the same seed: the same intervals, exactly
    reseeded = DatasetEvaluation.from_evaluation(streamed.evaluation, n_boot=200, seed=1).stats()
    assert reseeded["random"]["relevance-mass"] != stats["random"]["relevance-mass"]
    # the percentile interval of a wide distribution is close to mean ± 1.96 SE
    s = stats["random"]["relevance-mass"]
    assert s.high - s.low == pytest.approx(2 * 1.96 * s.se, rel=0.35)


def test_summarise_leaves_nan_out_and_bounds_degenerate_cells():
    s = summarise(np.array([1.0, np.nan, 3.0]), n_boot=50)
    assert (s.n, s.mean) == (2, 2.0) and s.se == pytest.approx(1.0) and 1.0 <= s.low <= 2.0 <= s.high <= 3.0
    assert summarise(np.full(4, np.nan)).n == 0 and math.isnan(summarise(np.full(4, np.nan)).mean)
    one = summarise(np.array([0.5]), n_boot=10)
    assert one.mean == one.low == one.high == 0.5 and math.isnan(one.se)
    # many images × resamples: drawn in bounded chunks, same numbers as one draw would give
    big = np.random.RandomState(0).rand(50_000)
    s = summarise(big, n_boot=300, seed=3)
    assert s.low < big.mean() < s.high and s.high - s.low == pytest.approx(2 * 1.96 * s.se, rel=0.2)


def test_markdown_and_dict(streamed):
    text = str(streamed)
    assert text == streamed.to_markdown()
    assert text.splitlines()[0] == "| method | pointing-game ↑ | relevance-mass ↑ | deletion ↓ | sparseness ↑ |"
    assert "| gradcam | " in text and f"{N} images" in text and "bootstrap" in text
    s = streamed.stats()["gradcam"]["deletion"]
    assert f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}]" in text
    d = streamed.to_dict()
    assert d["n"] == N and d["stats"]["gradcam"]["deletion"] == s.to_dict()
    assert set(s.to_dict()) == {"mean", "se", "ci_low", "ci_high", "n", "level"}
    import json

    json.dumps(d, allow_nan=True)


def test_sanity_checks_streamed_equal_evaluate(model):
    small = datasets.shapes(12, seed=6)
    whole = limelight.evaluate(model, nchw(small.images), ["gradcam"], ["sparseness"], sanity=True, repeats=1, seed=2)
    streamed = evaluate_dataset(model, list(chunks(small, 5)), ["gradcam"], ["sparseness"],
                                batch_size=12, sanity=True, repeats=1, seed=2, progress=False, n_boot=0)
    for row in whole.scores:  # one batch of all 12: random-logit draws the same classes
        for metric in ("sparseness", "randomisation", "random-logit"):
            np.testing.assert_allclose(streamed.scores[row][metric], whole.scores[row][metric], atol=1e-6)
    assert streamed.higher_is_better["randomisation"] is False


def test_unknown_metric_is_refused_before_any_work(model):
    def never():
        raise AssertionError("the source was read")
        yield

    with pytest.raises(LimelightError, match="unknown metric"):
        evaluate_dataset(model, never(), ["gradcam"], ["pointing-gaem"], progress=False)


def test_localisation_metric_without_masks_says_so(data, model):
    with pytest.raises(LimelightError, match="masks"):
        evaluate_dataset(model, [nchw(data.images[:4])], ["gradcam"], ["pointing-game"], progress=False)


def test_exported_from_limelight():
    assert limelight.evaluate_dataset is evaluate_dataset
