"""Several inputs (issue 10, part 3): tuples / dicts of inputs, SHAP values per input,
``explain_input``, CAMs sized by the one image input; a torch two-input model and its Keras
twin (functional, named inputs "image" and "meta") with the same weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import limelight  # noqa: E402
from limelight.core.errors import InputError, ParameterError, UnsupportedError  # noqa: E402
from limelight.core.explanation import Explanation  # noqa: E402

N, H, D, K = 3, 8, 5, 3


def weights(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Keras order: conv (3, 3, 3, 4), fc (5, 6), head (10, K)."""
    rng = np.random.RandomState(seed)

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-0.6, 0.6, shape).astype(np.float32)

    return {"conv": [u(3, 3, 3, 4), u(4)], "fc": [u(D, 6), u(6)], "head": [u(10, K), u(K)]}


class TorchTwo(torch.nn.Module):
    """An image branch (Conv2d, ReLU, global average) and a table branch (Linear, ReLU),
    concatenated before a Linear head; ``forward(image, meta)``."""

    def __init__(self, w: dict[str, list[np.ndarray]]) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(D, 6)
        self.head = torch.nn.Linear(10, K)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(w["conv"][0].transpose(3, 2, 0, 1).copy()))
            self.conv.bias.copy_(torch.from_numpy(w["conv"][1]))
            for name in ("fc", "head"):
                getattr(self, name).weight.copy_(torch.from_numpy(w[name][0].T.copy()))
                getattr(self, name).bias.copy_(torch.from_numpy(w[name][1]))

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        a = self.pool(self.relu(self.conv(image))).flatten(1)
        b = torch.relu(self.fc(meta))
        return self.head(torch.cat([a, b], 1))


def keras_two(w: dict[str, list[np.ndarray]], *, as_dict: bool = True) -> object:
    image = keras.Input((H, H, 3), name="image")
    meta = keras.Input((D,), name="meta")
    a = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    a = keras.layers.ReLU(name="relu")(a)
    a = keras.layers.GlobalAveragePooling2D(name="pool")(a)
    b = keras.layers.Dense(6, activation="relu", name="fc")(meta)
    out = keras.layers.Dense(K, name="head")(keras.layers.Concatenate(name="cat")([a, b]))
    inputs = {"image": image, "meta": meta} if as_dict else [image, meta]
    model = keras.Model(inputs, out)
    for name, arrays in w.items():
        model.get_layer(name).set_weights(arrays)
    return model


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(1)
    return {
        "image": rng.rand(N, H, H, 3).astype(np.float32),  # NHWC
        "meta": rng.rand(N, D).astype(np.float32),
        "bg_image": rng.rand(6, H, H, 3).astype(np.float32),
        "bg_meta": rng.rand(6, D).astype(np.float32),
    }


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def torch_inputs(data: dict[str, np.ndarray], prefix: str = "") -> dict[str, torch.Tensor]:
    return {"image": nchw(data[prefix + "image"]), "meta": torch.from_numpy(data[prefix + "meta"])}


def keras_inputs(data: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    return {"image": data[prefix + "image"], "meta": data[prefix + "meta"]}


def explained(exp: Explanation) -> np.ndarray:
    """f(x) - base for the explained class (single targets)."""
    return exp.outputs[np.arange(len(exp)), exp.targets] - exp.base_values


def total(values: object) -> np.ndarray:
    """Σ of the values over every input and feature, per sample."""
    arrays = values.values() if hasattr(values, "values") and not isinstance(values, np.ndarray) else values
    return sum(np.asarray(v, np.float64).reshape(len(v), -1).sum(1) for v in arrays)  # type: ignore[union-attr]


SHAP = [("shap-gradient", {"nsamples": 64, "seed": 3}), ("shap-deep", {})]


@pytest.mark.parametrize(("method", "params"), SHAP, ids=[m for m, _ in SHAP])
def test_twins_give_equal_values_per_input_and_completeness(data, method, params) -> None:
    w = weights()
    t = limelight.explain(
        TorchTwo(w), torch_inputs(data), method, background=torch_inputs(data, "bg_"), **params
    )
    k = limelight.explain(
        keras_two(w), keras_inputs(data), method, background=keras_inputs(data, "bg_"), **params
    )
    for exp in (t, k):  # a dict in gives a dict of values keyed by input name
        assert list(exp.values) == ["image", "meta"]
        assert exp.values["image"].shape == (N, H, H, 3) and exp.values["meta"].shape == (N, D)
        assert exp.inputs["meta"].shape == (N, D)
    np.testing.assert_array_equal(t.targets, k.targets)
    for name in ("image", "meta"):
        np.testing.assert_allclose(t.values[name], k.values[name], atol=1e-5)
        assert np.abs(t.values[name]).max() > 1e-3  # both inputs get attributions
    np.testing.assert_allclose(t.base_values, k.base_values, atol=1e-5)
    if method == "shap-deep":  # Σ over both inputs = f(x) - E f(bg), tight
        for exp in (t, k):
            np.testing.assert_allclose(total(exp.values), explained(exp), atol=1e-5)
            mean_bg = exp.outputs.mean()  # the base is the background's mean, not the inputs'
            assert not np.allclose(exp.base_values, mean_bg)


def test_shap_gradient_completeness_is_exact_with_one_background_row(data) -> None:
    """Expected gradients on one reference: Σ φ = f(x) - f(r) exactly for a model linear in
    each input, and in expectation (many samples) for the ReLU network."""

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(3 * H * H, K)
            self.b = torch.nn.Linear(D, K)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            return self.a(image.flatten(1)) + self.b(meta)

    torch.manual_seed(0)
    one = {"image": nchw(data["bg_image"][:1]), "meta": torch.from_numpy(data["bg_meta"][:1])}
    exp = limelight.explain(Linear(), torch_inputs(data), "shap-gradient", background=one, nsamples=5, seed=0)
    np.testing.assert_allclose(total(exp.values), explained(exp), atol=1e-5)
    deep = limelight.explain(TorchTwo(weights()), torch_inputs(data), "shap-gradient", background=one,
                             nsamples=2000, seed=0, batch_size=500)
    np.testing.assert_allclose(total(deep.values), explained(deep), atol=2e-3)


def test_tuple_in_tuple_out_and_keras_list(data) -> None:
    w = weights()
    x = (nchw(data["image"]), torch.from_numpy(data["meta"]))
    bg = (nchw(data["bg_image"]), torch.from_numpy(data["bg_meta"]))
    t = limelight.explain(TorchTwo(w), x, "shap-deep", background=bg)
    assert isinstance(t.values, tuple) and len(t.values) == 2 and t.values[1].shape == (N, D)
    # a Keras model with list inputs, fed a list: a tuple of values in the inputs' order
    k = limelight.explain(
        keras_two(w, as_dict=False), [data["image"], data["meta"]], "shap-deep",
        background=[data["bg_image"], data["bg_meta"]],
    )
    assert isinstance(k.values, tuple)
    for a, b in zip(t.values, k.values, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # a tuple fed to the dict-input torch twin gives the same numbers as the dict
    d = limelight.explain(TorchTwo(w), torch_inputs(data), "shap-deep", background=torch_inputs(data, "bg_"))
    np.testing.assert_allclose(t.values[0], d.values["image"], atol=1e-6)


class Additive(torch.nn.Module):
    """f = g(image) + h(meta): each input's attributions do not depend on the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.g = torch.nn.Linear(4, K)
        self.h1 = torch.nn.Linear(D, 6)
        self.h2 = torch.nn.Linear(6, K)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        g = self.g(torch.relu(self.conv(image)).mean((2, 3)))
        return g + self.h2(torch.tanh(self.h1(meta)))


@pytest.mark.parametrize(("method", "params"), SHAP, ids=[m for m, _ in SHAP])
def test_explain_input_on_an_additive_model_equals_the_per_input_values(data, method, params) -> None:
    torch.manual_seed(0)
    model = Additive()
    x, bg = torch_inputs(data), torch_inputs(data, "bg_")
    both = limelight.explain(model, x, method, background=bg, **params)
    for name in ("image", "meta"):
        one = limelight.explain(model, x, method, background=bg, explain_input=name, **params)
        assert isinstance(one.values, np.ndarray) and one.values.shape == both.values[name].shape
        np.testing.assert_allclose(one.values, both.values[name], atol=1e-5)
        assert one.params["explain_input"] == name
        if method == "shap-deep":  # the others held at the sample: Σ φ = f(x) - E_r f(x with r)
            np.testing.assert_allclose(one.values.reshape(N, -1).sum(1), explained(one), atol=1e-5)
    # analytic: with f additive, E_r f(x_image, r_meta) = g(x_image) + E h(r_meta), so
    # f(x) - base is h(x_meta) - E h(r_meta), which is the same for any image
    meta = limelight.explain(model, x, method, background=bg, explain_input="meta", targets=0, **params)
    with torch.no_grad():
        h = model.h2(torch.tanh(model.h1(x["meta"])))[:, 0] - model.h2(torch.tanh(model.h1(bg["meta"])))[:, 0].mean()
    np.testing.assert_allclose(explained(meta), h.numpy(), atol=1e-5)
    # a tuple takes a position
    pos = limelight.explain(model, (x["image"], x["meta"]), method, background=(bg["image"], bg["meta"]),
                            explain_input=-1, **params)
    np.testing.assert_allclose(pos.values, both.values["meta"], atol=1e-5)


def test_gradcam_maps_are_sized_by_the_image_input_and_equal_across_twins(data) -> None:
    w = weights()
    t = limelight.explain(TorchTwo(w), torch_inputs(data), "gradcam")
    k = limelight.explain(keras_two(w), keras_inputs(data), "gradcam")
    assert t.values.shape == k.values.shape == (N, H, H)
    assert t.params["layer"] == k.params["layer"] == "relu"
    np.testing.assert_allclose(t.values, k.values, atol=1e-5)
    raw = limelight.explain(TorchTwo(w), torch_inputs(data), "gradcam", normalize=False, explain_input="image")
    assert raw.values.shape == (N, H, H) and raw.values.max() > 0


def test_cams_need_one_image_input(data) -> None:
    class TwoImages(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, K)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(a + b[..., :H, :H])).mean((2, 3)))

    img = nchw(data["image"])
    big = torch.rand(N, 3, 2 * H, 2 * H)
    with pytest.raises(InputError, match="explain_input"):
        limelight.explain(TwoImages(), (img, big), "gradcam")
    exp = limelight.explain(TwoImages(), (img, big), "gradcam", explain_input=1)
    assert exp.values.shape == (N, 2 * H, 2 * H)


def test_methods_for_one_input_say_which_take_several(data) -> None:
    from limelight.testing import registered

    class OneInput(limelight.Explainer):
        """A plugin's method written for one input (declares no several_inputs)."""

        name = "one-input"

        def explain(self, x, target):
            raise AssertionError("never reached")

    with registered(OneInput), pytest.raises(UnsupportedError, match="shap-gradient") as err:
        limelight.explain(TorchTwo(weights()), torch_inputs(data), "one-input")
    assert all(m in str(err.value) for m in ("shap-deep", "gradcam", "scorecam", "rise", "shap-partition"))


@pytest.mark.parametrize(("method", "params"), [
    ("scorecam", {"layer": "conv"}), ("ablationcam", {"layer": "conv"}), ("rise", {"n_masks": 40, "seed": 0, "grid": 2}),
])
def test_gradient_free_methods_mask_the_image_and_hold_the_table(data, method, params) -> None:
    model, x = TorchTwo(weights()), torch_inputs(data)
    exp = limelight.explain(model, x, method, targets=[0, 1, 2], batch_size=4, **params)
    assert exp.values.shape == (N, H, H) and np.isfinite(exp.values).all()
    assert (exp.values.reshape(N, -1).std(axis=1) > 0.01).all()  # informative maps
    inner = {**params, "layer": "two.conv"} if "layer" in params else params
    for i in range(N):  # each sample equals the image-alone model with its own table row
        alone = limelight.explain(_ImageOnly(model, x["meta"][i : i + 1]), x["image"][i : i + 1], method,
                                  targets=[int(exp.targets[i])], batch_size=4, **inner)
        np.testing.assert_allclose(exp.values[i], alone.values[0], rtol=1e-5, atol=1e-5)
    twin = limelight.explain(keras_two(weights()), keras_inputs(data), method, targets=[0, 1, 2], batch_size=4, **params)
    np.testing.assert_allclose(twin.values, exp.values, rtol=1e-4, atol=1e-4)


def test_bad_several_inputs_get_clear_errors(data) -> None:
    model, x = TorchTwo(weights()), torch_inputs(data)
    with pytest.raises(InputError, match="same structure"):
        limelight.explain(model, x, "shap-deep", background=nchw(data["bg_image"]))
    with pytest.raises(InputError, match="same structure"):
        limelight.explain(model, x, "shap-deep", background={"image": nchw(data["bg_image"])})
    with pytest.raises(ParameterError, match="not one of the inputs"):
        limelight.explain(model, x, "shap-deep", background=torch_inputs(data, "bg_"), explain_input="imgae")
    with pytest.raises(ParameterError, match="out of range"):
        limelight.explain(model, tuple(x.values()), "gradcam", explain_input=2)
    with pytest.raises(InputError, match="numbers of samples"):
        limelight.explain(model, {"image": x["image"], "meta": x["meta"][:1]}, "gradcam")
    with pytest.raises(ParameterError, match="one array"):
        limelight.explain(torch.nn.Sequential(torch.nn.Linear(D, K)), x["meta"], "gradcam", explain_input="meta")
    with pytest.raises(InputError, match="'meta'"):  # which input is wrong is named
        limelight.explain(model, {"image": x["image"], "meta": x["meta"] * float("nan")}, "gradcam")


def test_explanation_with_values_per_input(data, tmp_path) -> None:
    exp = limelight.explain(TorchTwo(weights()), torch_inputs(data), "shap-deep", background=torch_inputs(data, "bg_"))
    with pytest.raises(TypeError):
        exp.values["image"] = 0  # type: ignore[index]
    assert not exp.values["meta"].flags.writeable
    assert len(exp) == N and exp[1].values["meta"].shape == (1, D)
    np.testing.assert_array_equal(exp[-1].values["image"][0], exp.values["image"][-1])
    path = tmp_path / "e.npz"
    exp.save(path)
    back = Explanation.load(path)
    assert list(back.values) == ["image", "meta"] and list(back.inputs) == ["image", "meta"]
    for name in ("image", "meta"):
        np.testing.assert_array_equal(back.values[name], exp.values[name])
    with pytest.raises(UnsupportedError, match="explain_input"):
        exp.to_shap()
    import copy
    import pickle

    again = pickle.loads(pickle.dumps(exp))
    np.testing.assert_array_equal(again.values["meta"], exp.values["meta"])
    assert copy.copy(exp).values["image"].shape == (N, H, H, 3)
    tup = limelight.explain(TorchTwo(weights()), tuple(torch_inputs(data).values()), "gradcam")
    tup_sh = limelight.explain(TorchTwo(weights()), tuple(torch_inputs(data).values()), "shap-deep",
                               background=tuple(torch_inputs(data, "bg_").values()))
    tup_sh.save(path)
    assert isinstance(Explanation.load(path).values, tuple)
    assert isinstance(tup.inputs, tuple) and tup.inputs[0].shape == (N, H, H, 3)


def test_shap_auto_and_the_models_untouched(data) -> None:
    model = TorchTwo(weights())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exp = limelight.explain(model, torch_inputs(data), "shap", background=torch_inputs(data, "bg_"))
    assert exp.params["algorithm"] == "shap-deep" and list(exp.values) == ["image", "meta"]
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_torch_inputs_are_canonicalised_one_by_one(data) -> None:
    """A 1-channel mask beside a 3-channel image: no "first convolution takes 3 channels"
    refusal for the mask; each 4-D input becomes NHWC."""

    class Masked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, K)

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.head((torch.relu(self.conv(image)) * mask).mean((2, 3)))

    torch.manual_seed(0)
    image, mask = nchw(data["image"]), torch.rand(N, 1, H, H)
    x = limelight.wrap(Masked()).canonical({"image": image, "mask": mask})
    assert x["image"].shape == (N, H, H, 3) and x["mask"].shape == (N, H, H, 1)
    exp = limelight.explain(Masked(), {"image": image, "mask": mask}, "gradcam", explain_input="image")
    assert exp.values.shape == (N, H, H)
    deep = limelight.explain(Masked(), {"image": image, "mask": mask}, "shap-gradient", nsamples=8, seed=0,
                             background={"image": image.flip(0), "mask": mask.flip(0)})
    assert deep.values["mask"].shape == (N, H, H, 1)


def test_keras_shap_auto_and_batches(data) -> None:
    w = weights()
    model = keras_two(w)
    exp = limelight.explain(model, keras_inputs(data), "shap", background=keras_inputs(data, "bg_"))
    assert exp.params["algorithm"] == "shap-deep"
    small = limelight.explain(model, keras_inputs(data), "shap-deep", background=keras_inputs(data, "bg_"),
                              batch_size=2)
    for name in ("image", "meta"):
        np.testing.assert_allclose(small.values[name], exp.values[name], atol=1e-5)
    cam = limelight.explain(model, keras_inputs(data), "gradcam", batch_size=1)
    ref = limelight.explain(TorchTwo(w), torch_inputs(data), "gradcam", batch_size=2)
    np.testing.assert_allclose(cam.values, ref.values, atol=1e-5)


def test_cam_explanations_of_several_inputs_draw_the_image_input(data) -> None:
    pytest.importorskip("shap")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    exp = limelight.explain(TorchTwo(weights()), torch_inputs(data), "gradcam")
    assert list(exp.inputs) == ["image", "meta"]
    shap_exp = exp.to_shap()
    assert shap_exp.data.shape == (N, H, H, 3)
    exp.plot(index=0)
    meta = limelight.explain(TorchTwo(weights()), torch_inputs(data), "shap-deep",
                             background=torch_inputs(data, "bg_"), explain_input="meta")
    assert meta.to_shap().values.shape == (N, D, 1)


def test_evaluate_refuses_several_inputs_clearly(data) -> None:
    from limelight.evaluation import evaluate

    with pytest.raises(UnsupportedError, match="2 inputs"):
        evaluate(TorchTwo(weights()), torch_inputs(data), ["gradcam"], metrics=["deletion"])


class _ImageOnly(torch.nn.Module):
    """TorchTwo with the table input fixed to one row: a model of the image alone."""

    def __init__(self, two: torch.nn.Module, meta: torch.Tensor) -> None:
        super().__init__()
        self.two, self.meta = two, meta

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.two(image, self.meta.expand(len(image), -1))


def test_shap_partition_masks_the_named_image_and_holds_the_others(data) -> None:
    model, x = TorchTwo(weights()), torch_inputs(data)
    params = {"mask": 0.0, "max_evals": 200, "seed": 0}
    with pytest.raises(InputError, match="explain_input"):
        limelight.explain(model, x, "shap-partition", **params)
    exp = limelight.explain(model, x, "shap-partition", explain_input="image", **params)
    assert exp.values.shape == (N, H, H, 3) and exp.params["explain_input"] == "image"
    np.testing.assert_allclose(exp.values.reshape(N, -1).sum(1), explained(exp), rtol=1e-5, atol=1e-6)  # completeness
    for i in range(N):  # each sample: the image model with this sample's table row
        alone = limelight.explain(_ImageOnly(model, x["meta"][i : i + 1]), x["image"][i : i + 1], "shap-partition",
                                  targets=[int(exp.targets[i])], **params)
        np.testing.assert_allclose(exp.values[i], alone.values[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(exp.base_values[i], alone.base_values[0], rtol=1e-5, atol=1e-6)


def test_cams_refuse_a_table_named_as_the_input_to_map(data) -> None:
    with pytest.raises(InputError, match="explain_input"):
        limelight.explain(TorchTwo(weights()), torch_inputs(data), "gradcam", explain_input="meta")
