"""Target objects and dense outputs in the code around explain(): evaluate, the sanity
checks, explain_dataset, the CLI summary, and clear errors on bad target / output= input."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import limelight  # noqa: E402
from limelight import targets as T  # noqa: E402
from limelight.core.errors import InputError, TargetError, UnsupportedError  # noqa: E402
from tests.conftest import small_torch_cnn  # noqa: E402

K = 5  # small_torch_cnn's classes


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = small_torch_cnn().eval()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x


class Dense(torch.nn.Module):
    """Conv(3→8) ReLU Conv1x1(8→4): a dense (N, 4, H, W) output, seen as (N, H, W, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.relu(self.conv(x)))


@pytest.fixture(scope="module")
def dense():
    torch.manual_seed(0)
    model = Dense().eval()
    x = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    mask = np.zeros((10, 10), bool)
    mask[2:6, 3:8] = True
    return model, x, mask


def margin(xp, out):
    return out[:, 0] - out[:, 1]


# -- 1. evaluate refuses targets that name no class ------------------------------------------
@pytest.mark.parametrize("target", [
    T.Function(margin),
    T.Similarity(np.linspace(-1, 1, K).astype(np.float32)),
])
@pytest.mark.parametrize("metric", ["deletion", "completeness"])
def test_evaluate_refuses_targets_that_name_no_class_before_any_work(cnn, monkeypatch, target, metric):
    model, x = cnn
    from limelight.evaluation import table

    def no_work(*a, **k):
        raise AssertionError("explain ran before the targets were refused")

    monkeypatch.setattr(table, "explain", no_work)
    with pytest.raises(UnsupportedError, match=rf"{metric}.*class targets.*targets=None"):
        limelight.evaluate(model, x, ["gradcam"], [metric], targets=target)


def test_evaluate_refuses_given_explanations_of_a_function_target(cnn):
    model, x = cnn
    exp = limelight.explain(model, x, "gradcam", targets=T.Function(margin))
    assert (exp.targets == -1).all()  # what the metrics used to read as the last class
    with pytest.raises(UnsupportedError, match="no class's"):
        limelight.evaluate(model, x, {"g": exp}, ["insertion"])
    with pytest.raises(UnsupportedError, match="sanity"):
        limelight.evaluate(model, x, ["gradcam"], ["sparseness"], targets=T.Function(margin), sanity=True)


def test_metrics_that_need_no_class_still_score_function_targets(cnn):
    model, x = cnn
    exp = limelight.explain(model, x, "gradcam", targets=T.Function(margin))
    ev = limelight.evaluate(model, x, {"g": exp}, ["sparseness", "complexity"])
    assert set(ev.scores["g"]) == {"sparseness", "complexity"}
    assert np.isfinite(ev.scores["g"]["sparseness"]).all()


def test_class_objects_are_scored_as_the_ints_they_name(cnn):
    model, x = cnn
    a = limelight.evaluate(model, x, ["gradcam"], ["deletion"], targets=T.Class([0, 1, 2, 3, 4, 0]))
    b = limelight.evaluate(model, x, ["gradcam"], ["deletion"], targets=[0, 1, 2, 3, 4, 0])
    np.testing.assert_array_equal(a.scores["gradcam"]["deletion"], b.scores["gradcam"]["deletion"])


# -- 2. dense outputs in evaluate -------------------------------------------------------------
def test_evaluate_on_a_dense_model_is_one_clear_error(dense):
    model, x, mask = dense
    with pytest.raises(UnsupportedError, match=r"dense, \(1, 10, 10, 4\)"):
        limelight.evaluate(model, x, ["gradcam"], ["deletion"])
    with pytest.raises(UnsupportedError, match="Region"):
        limelight.evaluate(model, x, ["gradcam"], ["deletion"], targets=T.Region(1, mask))


def test_faithfulness_metric_called_on_a_dense_model_is_one_clear_error(dense):
    model, x, mask = dense
    from limelight.evaluation.faithfulness import Deletion

    maps = np.random.RandomState(0).rand(3, 10, 10)
    with pytest.raises(UnsupportedError, match=r"dense, \(\d+, 10, 10, 4\)"):
        Deletion(steps=2)(maps, x=limelight.wrap(model).canonical(x), targets=np.zeros(3, int),
                          model=limelight.wrap(model))


def test_predicted_classes_read_the_last_axis(cnn):
    model, x = cnn
    from limelight.evaluation.table import _predicted_classes

    wrapped = limelight.wrap(model)
    expected = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(_predicted_classes(wrapped, wrapped.canonical(x), None, None), expected)


# -- 3. the sanity checks ---------------------------------------------------------------------
def test_random_logit_refuses_targets_that_are_no_class(cnn, dense):
    from limelight.evaluation.sanity import random_logit

    model, x = cnn
    with pytest.raises(UnsupportedError, match="random-logit"):
        random_logit(model, x, "gradcam", params={"targets": T.Function(margin)})
    exp = limelight.explain(model, x, "gradcam", targets=T.Function(margin))
    with pytest.raises(UnsupportedError, match="no class's"):
        random_logit(model, x, "gradcam", original=exp)
    dmodel, dx, mask = dense
    region = limelight.explain(dmodel, dx, "gradcam", targets=T.Region(1, mask))
    with pytest.raises(UnsupportedError, match=r"dense, \(3, 10, 10, 4\)"):
        random_logit(dmodel, dx, "gradcam", original=region)


def test_randomisation_keeps_a_function_target(cnn):
    """Function(out[:, 0]) is class 0; it used to be replaced by its -1 targets (the last class)."""
    from limelight.evaluation.sanity import full_randomization

    model, x = cnn
    by_fn = full_randomization(model, x, "gradcam", seeds=(0,),
                               params={"targets": T.Function(lambda xp, o: o[:, 0])})
    by_class = full_randomization(model, x, "gradcam", seeds=(0,), params={"targets": 0})
    last = full_randomization(model, x, "gradcam", seeds=(0,), params={"targets": K - 1})
    np.testing.assert_allclose(by_fn, by_class, atol=1e-12)
    assert not np.allclose(by_fn, last)
    exp = limelight.explain(model, x, "gradcam", targets=T.Function(margin))
    with pytest.raises(UnsupportedError, match=r"params\['targets'\]"):
        full_randomization(model, x, "gradcam", seeds=(0,), original=exp)


# -- 4. explain_dataset with target objects ---------------------------------------------------
def out(tmp_path):
    """A fresh results store under ``tmp_path``."""
    index = len(list(tmp_path.iterdir()))
    return tmp_path / f"run{index}.zarr"


def _batches(x, size):
    return (x[i:i + size] for i in range(0, len(x), size))  # an iterable of unknown length


@pytest.mark.parametrize("known_length", [True, False])
def test_explain_dataset_slices_per_sample_class_targets(cnn, known_length, tmp_path):
    model, x = cnn
    classes = [0, 1, 2, 3, 4, 0]
    source = [x[:4], x[4:]] if known_length else _batches(x, 4)
    run = limelight.explain_dataset(model, source, "gradcam", targets=T.Class(classes), batch_size=4, progress=False, out=out(tmp_path))
    res = run.results
    assert not run.failures and len(res) == 6
    np.testing.assert_array_equal(res.targets[:], classes)
    expected = limelight.explain(model, x, "gradcam", targets=classes)
    np.testing.assert_allclose(res.values[:], expected.values, rtol=1e-5, atol=1e-6)


def test_explain_dataset_shared_and_function_targets_go_to_every_batch(cnn, tmp_path):
    model, x = cnn
    for target, expect in [(T.Class(3), 3), (T.Function(lambda xp, o: o[:, 2]), 2)]:
        run = limelight.explain_dataset(model, _batches(x, 4), "gradcam", targets=target, batch_size=4,
                                        progress=False, out=out(tmp_path))
        expected = limelight.explain(model, x, "gradcam", targets=expect)
        np.testing.assert_allclose(run.results.values[:], expected.values, rtol=1e-5, atol=1e-6)


def test_explain_dataset_slices_per_sample_regions_and_similarities(dense, cnn, tmp_path):
    model, x, _ = dense
    masks = np.random.RandomState(3).rand(3, 10, 10) > 0.5
    run = limelight.explain_dataset(model, [x[:2], x[2:]], "gradcam", targets=T.Region(2, masks), batch_size=2,
                                    progress=False, out=out(tmp_path))
    expected = limelight.explain(model, x, "gradcam", targets=T.Region(2, masks))
    np.testing.assert_allclose(run.results.values[:], expected.values, rtol=1e-5, atol=1e-6)
    cmodel, cx = cnn
    emb = np.random.RandomState(4).randn(6, K).astype(np.float32)
    run = limelight.explain_dataset(cmodel, _batches(cx, 4), "gradcam", targets=T.Similarity(emb), batch_size=4,
                                    progress=False, out=out(tmp_path))
    expected = limelight.explain(cmodel, cx, "gradcam", targets=T.Similarity(emb))
    np.testing.assert_allclose(run.results.values[:], expected.values, rtol=1e-5, atol=1e-6)


def test_explain_dataset_refuses_per_sample_targets_of_another_length(cnn, tmp_path):
    model, x = cnn
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(6)), batch_size=4)
    with pytest.raises(TargetError, match=r"Class\(\[0, 1, 2\]\) does not fit the dataset of 6 rows"):  # a known length
        limelight.explain_dataset(model, loader, "gradcam", targets=T.Class([0, 1, 2]), batch_size=4,
                                  progress=False, out=out(tmp_path))
    with pytest.raises(TargetError, match=r"Class\(\[0, 1, 2\]\) holds 3 rows.*row 3"):  # found out on the way
        limelight.explain_dataset(model, _batches(x, 4), "gradcam", targets=T.Class([0, 1, 2]), batch_size=4,
                                  progress=False, out=out(tmp_path))


# -- 5. the CLI summary on dense outputs ------------------------------------------------------
def test_cli_predictions_of_dense_outputs_are_the_top_mean_class():
    from limelight.cli import _predictions

    rng = np.random.RandomState(0)
    dense_out = rng.randn(2, 4, 5, 3).astype(np.float32)
    got = _predictions(dense_out, lambda k: f"c{k}")
    means = dense_out.reshape(2, -1, 3).mean(axis=1)
    assert [p["class"] for p in got] == list(means.argmax(1))
    np.testing.assert_allclose([p["score"] for p in got], means.max(1), rtol=1e-6)
    assert all(p["dense"] for p in got)
    flat = _predictions(means, str)
    assert [p["class"] for p in flat] == list(means.argmax(1)) and "dense" not in flat[0]


# -- 6. clear errors on bad input -------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: T.Similarity("abc"), lambda: T.Region(1, "abc")])
def test_non_numeric_arrays_are_target_errors(make):
    with pytest.raises(TargetError, match="tensor of numbers") as info:
        make()
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("fn, raised", [
    (lambda xp, o: o[:, 99], "IndexError"),
    (lambda xp, o: o.numpy()[:, 0], "RuntimeError"),  # .numpy() of a tensor that requires grad
])
def test_a_failing_function_is_one_target_error_torch(cnn, fn, raised):
    model, x = cnn
    with pytest.raises(TargetError, match=rf"the Function target's fn raised {raised}") as info:
        limelight.explain(model, x, "gradcam", targets=T.Function(fn))
    assert type(info.value.__cause__).__name__ == raised
    assert all(p.requires_grad for p in model.parameters())  # the model is left as it was


def test_a_failing_function_is_one_target_error_keras(twin_cnn):
    _, km, _, layer, _, x = twin_cnn

    def bad(xp, o):
        raise IndexError("no such output")

    with pytest.raises(TargetError, match="fn raised IndexError: no such output") as info:
        limelight.explain(km, x, "gradcam", layer=layer, targets=T.Function(bad))
    # TensorFlow re-raises what a traced function raised ``from None``; the original is kept
    assert isinstance(info.value.framework_error, IndexError)
    assert isinstance(info.value.__cause__, IndexError)  # chained again by the backend


def test_a_failing_output_callable_is_an_input_error(cnn):
    model, x = cnn

    def pick(raw):
        return raw.logits  # the model returns a tensor, which has no such attribute

    with pytest.raises(InputError, match="output= callable") as info:
        limelight.explain(model, x, "gradcam", output=pick)
    assert info.value.__cause__ is not None


def test_evaluate_dataset_says_target_objects_are_not_taken(cnn):
    model, x = cnn
    with pytest.raises(limelight.core.errors.ParameterError, match="target objects are not taken"):
        limelight.evaluate_dataset(model, [x], "gradcam", "deletion", targets=T.Function(margin), progress=False)
