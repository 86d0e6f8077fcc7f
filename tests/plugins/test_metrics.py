"""Metrics against hand-computed values, twins, and evaluate() with its baselines."""

import numpy as np
import pytest

import limelight
from limelight.core.errors import InputError, ParameterError
from limelight.core.registry import registry
from limelight.evaluation import Evaluation, relevance_map

MASK = np.zeros((1, 8, 8), bool)
MASK[0, 2:4, 5:7] = True  # 4 pixels of 64
POINTING = np.where(MASK, 1.0, 0.0)
UNIFORM = np.ones((1, 8, 8))


def metric(name, **params):
    return registry.metrics()[name](**params)


def predicted(model, x):
    """Each image's predicted class (host ints) for a wrapped model and NHWC host images."""
    return model.to_numpy(model.predict(model.asarray(x))).argmax(1)


def test_a_map_on_the_mask_scores_one():
    for name in ("pointing-game", "relevance-mass", "relevance-rank", "energy-pointing-game"):
        assert metric(name)(POINTING, masks=MASK)[0] == pytest.approx(1.0), name


def test_a_uniform_map_scores_the_area_fraction():
    assert metric("relevance-mass")(UNIFORM, masks=MASK)[0] == pytest.approx(4 / 64)
    assert metric("energy-pointing-game")(UNIFORM, masks=MASK)[0] == pytest.approx(4 / 64)  # box = mask here
    assert metric("sparseness")(UNIFORM)[0] == pytest.approx(0.0)
    assert metric("sparseness")(POINTING)[0] == pytest.approx(1 - 4 / 64)  # Gini of 4 equal spikes


def test_pointing_game_tolerance():
    peak = np.zeros((1, 8, 8))
    peak[0, 2, 2] = 1.0  # 3 px left of the mask's column 5
    assert metric("pointing-game")(peak, masks=MASK)[0] == 0
    assert metric("pointing-game", tolerance=3)(peak, masks=MASK)[0] == 1


def test_relevance_rank_counts_top_k():
    ranked = np.zeros((1, 8, 8))
    ranked[0, 2, 5] = ranked[0, 2, 6] = 3.0  # two of the four top pixels on the mask
    ranked[0, 0, 0] = ranked[0, 0, 1] = 2.0
    assert metric("relevance-rank")(ranked, masks=MASK)[0] == pytest.approx(0.5)


def test_deletion_best_first_beats_worst_first_on_the_demo_model():
    torch = pytest.importorskip("torch")
    from limelight import datasets, demo

    data = datasets.shapes(16, seed=11)
    model = limelight.wrap(demo.torch_model())
    x = data.images
    targets = predicted(model, x)
    good = np.where(data.masks, 1.0, 0.0) + 0.01 * np.random.RandomState(0).rand(*data.masks.shape)
    worst = -good
    deletion, insertion = metric("deletion"), metric("insertion")
    assert deletion(good, x=x, targets=targets, model=model).mean() < deletion(worst, x=x, targets=targets, model=model).mean()
    assert insertion(good, x=x, targets=targets, model=model).mean() > insertion(worst, x=x, targets=targets, model=model).mean()
    del torch


def test_torch_and_keras_twins_give_the_same_metric_values():
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    from limelight import datasets, demo

    data = datasets.shapes(8, seed=12)
    maps = relevance_map(limelight.explain(demo.keras_model(), data.images, "gradcam"))
    t, k = limelight.wrap(demo.torch_model()), limelight.wrap(demo.keras_model())
    targets = predicted(t, data.images)
    for name in ("deletion", "insertion"):
        a = metric(name)(maps, x=data.images, targets=targets, model=t)
        b = metric(name)(maps, x=data.images, targets=targets, model=k)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_evaluate_puts_baselines_beside_methods():
    torch = pytest.importorskip("torch")
    from limelight import datasets, demo

    data = datasets.shapes(24, seed=13)
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    ev = limelight.evaluate(demo.torch_model(), x, ["gradcam"], ["pointing-game", "relevance-mass", "deletion"], masks=data.masks)
    table = ev.table()
    assert list(table) == ["gradcam", "random", "centre", "edge"]
    assert table["gradcam"]["pointing-game"] >= 0.7 > table["random"]["pointing-game"]
    assert table["gradcam"]["relevance-mass"] > table["random"]["relevance-mass"]
    assert table["gradcam"]["deletion"] < table["random"]["deletion"]
    assert "deletion ↓" in ev.to_markdown()


def test_clear_errors():
    with pytest.raises(InputError, match="needs ground-truth masks"):
        metric("relevance-mass")(UNIFORM)
    with pytest.raises(ParameterError, match="does not accept radius"):
        metric("pointing-game", radius=3)
    with pytest.raises(InputError, match="must match"):
        metric("relevance-mass")(UNIFORM, masks=np.zeros((1, 4, 4), bool))
    with pytest.raises(ParameterError, match=r"fractions must be in \[0, 1\)"):
        metric("road-morf", fractions=(0.5, 1.0))(UNIFORM, x=np.zeros((1, 8, 8, 3)), targets=np.zeros(1, int), model=object())


def test_randomisation_check_flags_the_edge_map_and_grad_cam_passes():
    torch = pytest.importorskip("torch")
    from limelight import datasets, demo

    data = datasets.shapes(12, seed=14)
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    ev = limelight.evaluate(demo.torch_model(), x, ["gradcam"], ["pointing-game"], masks=data.masks, sanity=True)
    table = ev.table()
    assert table["edge"]["randomisation"] == pytest.approx(1.0)  # model-free: flagged
    assert table["gradcam"]["randomisation"] <= 0.3  # depends on the weights (issue's target, 3 redraws)
    assert table["gradcam"]["random-logit"] < 0.5  # depends on the class


def test_randomised_copies_are_twins_and_leave_the_model_alone():
    torch = pytest.importorskip("torch")
    pytest.importorskip("keras")
    from limelight import datasets, demo
    from limelight.evaluation.sanity import cascading_randomization

    tm, km = demo.torch_model(), demo.keras_model()
    before = [p.detach().clone() for p in tm.parameters()]
    keras_before = [w.copy() for w in km.get_weights()]
    images = datasets.shapes(4, seed=15).images
    t_curve = cascading_randomization(tm, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), "gradcam", seed=2)
    k_curve = cascading_randomization(km, images, "gradcam", seed=2)
    assert [c for _, c in t_curve] == pytest.approx([c for _, c in k_curve], abs=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, tm.parameters(), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(keras_before, km.get_weights(), strict=True))


def test_complexity_is_the_entropy_of_the_map():
    assert metric("complexity")(UNIFORM)[0] == pytest.approx(np.log(64))
    assert metric("complexity")(POINTING)[0] == pytest.approx(np.log(4))


def test_confidence_drop_and_increase_and_blur_baseline():
    pytest.importorskip("torch")
    from limelight import datasets, demo
    from limelight.evaluation.faithfulness import _box_blur

    constant = np.full((1, 6, 6, 3), 0.4, np.float32)
    np.testing.assert_allclose(_box_blur(constant, 2), constant, rtol=1e-6)
    data = datasets.shapes(8, seed=16)
    model = limelight.wrap(demo.torch_model())
    targets = predicted(model, data.images)
    keep_all = np.ones(data.masks.shape)
    keep_all[:, 0, 0] = 0  # min-max -> all ones except one pixel
    drop = metric("confidence-drop")(keep_all, x=data.images, targets=targets, model=model)
    assert drop.max() < 0.05  # keeping the whole image keeps the confidence
    on_shape = np.where(data.masks, 1.0, 0.0)
    off_shape = 1.0 - on_shape
    assert (metric("confidence-drop")(on_shape, x=data.images, targets=targets, model=model).mean()
            < metric("confidence-drop")(off_shape, x=data.images, targets=targets, model=model).mean())
    assert set(metric("confidence-increase")(on_shape, x=data.images, targets=targets, model=model)) <= {0.0, 1.0}
    blurred = metric("deletion", baseline="blur")(on_shape, x=data.images, targets=targets, model=model)
    assert blurred.shape == (8,) and np.isfinite(blurred).all()


def test_road_most_relevant_first_beats_least_relevant_first_on_the_mask():
    pytest.importorskip("torch")
    from limelight import datasets, demo

    data = datasets.shapes(12, seed=17)
    model = limelight.wrap(demo.torch_model())
    targets = predicted(model, data.images)
    oracle = np.where(data.masks, 1.0, 0.0) + 0.01 * np.random.RandomState(0).rand(*data.masks.shape)
    fractions = {"fractions": (0.1, 0.3, 0.5)}
    morf = metric("road-morf", **fractions)(oracle, x=data.images, targets=targets, model=model)
    lerf = metric("road-lerf", **fractions)(oracle, x=data.images, targets=targets, model=model)
    assert morf.mean() < 0.5 < lerf.mean()  # removing the shape first kills the class; the background does not
    again = metric("road-morf", **fractions)(oracle, x=data.images, targets=targets, model=model)
    np.testing.assert_array_equal(morf, again)  # seeded noise
    assert metric("road-morf").higher_is_better is False and metric("road-lerf").higher_is_better


def test_completeness_by_hand_and_not_applicable_to_maps():
    exp = limelight.Explanation(
        method="toy", values=np.full((2, 2, 2, 1), 0.25), targets=np.array([1, 0]),
        outputs=np.array([[0.0, 3.0], [2.0, 0.0]]), base_values=np.array([2.0, 1.5]),
    )  # Σφ = 1 for both; f - base = 1 and 0.5
    np.testing.assert_allclose(metric("completeness")(relevance_map(exp), explanation=exp), [0.0, 1.0])
    assert np.isnan(metric("completeness")(UNIFORM)).all()  # a bare map has no base value


def test_evaluate_reports_completeness_for_additive_methods_only():
    torch = pytest.importorskip("torch")
    from limelight import datasets, demo

    data = datasets.shapes(6, seed=18)
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    background = torch.from_numpy(datasets.shapes(4, seed=19).images.transpose(0, 3, 1, 2).copy())
    ev = limelight.evaluate(demo.torch_model(), x, ["gradcam", "shap-deep"], ["completeness", "sparseness"],
                            method_params={"shap-deep": {"background": background}})
    table = ev.table()
    assert table["shap-deep"]["completeness"] < 1e-4  # DeepSHAP sums to f(x) - E f(bg)
    assert np.isnan(table["gradcam"]["completeness"]) and np.isnan(table["random"]["completeness"])
    assert "| gradcam | — |" in ev.to_markdown()
    both = Evaluation.concatenate([ev, ev])
    assert both.scores["gradcam"]["sparseness"].shape == (12,)
    assert both.table()["gradcam"]["sparseness"] == pytest.approx(table["gradcam"]["sparseness"])


def test_reinitialisation_draws_from_the_fan_in_bound():
    from limelight.core.model import reinitialize

    kernel, bias = np.ones((3, 3, 4, 8), np.float32), np.ones(8, np.float32)
    new_kernel, new_bias = reinitialize([kernel, bias], np.random.RandomState(0))
    bound = 1 / np.sqrt(3 * 3 * 4)
    assert np.abs(new_kernel).max() <= bound and np.abs(new_bias).max() <= bound
    assert new_kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)  # uniform(-b, b)
    gamma = np.arange(6, dtype=np.float32)
    (shuffled,) = reinitialize([gamma], np.random.RandomState(0))  # normalisation: permuted
    assert sorted(shuffled) == sorted(gamma) and not np.array_equal(shuffled, gamma)


def test_models_ending_in_softmax_score_as_their_logits_do():
    """Issue 12, item 4, on real backends: output_kind="auto" reads a softmax model's outputs
    as probabilities (a second softmax would flatten the curves)."""
    torch = pytest.importorskip("torch")
    from limelight import datasets, demo

    data = datasets.shapes(6, seed=22)
    logits = demo.torch_model()
    models = {"torch": limelight.wrap(torch.nn.Sequential(logits, torch.nn.Softmax(dim=1)))}
    reference = limelight.wrap(logits)
    targets = predicted(reference, data.images)
    oracle = np.where(data.masks, 1.0, 0.0) + 0.01 * np.random.RandomState(0).rand(*data.masks.shape)
    try:
        keras = __import__("keras")  # after torch
        km = demo.keras_model()
        models["keras"] = limelight.wrap(keras.Sequential([keras.Input(data.images.shape[1:]), km,
                                                           keras.layers.Softmax()]))
    except ImportError:
        pass
    for name, params in [("deletion", {"steps": 8}), ("insertion", {"steps": 8}),
                         ("road-morf", {"fractions": (0.2, 0.6)}), ("confidence-drop", {})]:
        expected = metric(name, **params)(oracle, x=data.images, targets=targets, model=reference)
        for framework, model in models.items():
            m = metric(name, **params)
            got = m(oracle, x=data.images, targets=targets, model=model)
            np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"{name} {framework}")
            assert m.output_kind_used == "probabilities", (name, framework)
