"""The plugin system: entry-point discovery, broken plugins, strict mode, blocking, clashes."""

import importlib
import textwrap
import warnings

import numpy as np
import pytest

import limelight
from limelight import Explainer, Gradients
from limelight.core.errors import (
    ParameterError,
    PluginError,
    PluginWarning,
    UnknownExplainerError,
    UnsupportedError,
    UnsupportedModelError,
)
from limelight.core.model import NumpyModel, SupportsGradients, SupportsLayers

PLUGIN = '''
import numpy as np
import limelight


class Constant(limelight.Explainer):
    name = "{name}"

    def explain(self, x, targets):
        outputs = self.model.predict(x)
        return limelight.Explanation(method=self.name, values=np.ones(x.shape[:-1]),
                                     targets=np.zeros(len(x)), outputs=outputs)


@limelight.hookimpl
def limelight_register_explainers(register):
    register(Constant)
'''


def install_plugin(root, dist, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write modules and a ``dist``-1.0.dist-info with entry points under ``root``."""
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[limelight]\n{lines}\n")


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_registry):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_builtins_are_ordinary_plugins():
    infos = {p.name: p for p in limelight.plugins()}
    assert infos["limelight.plugins.cam"].explainers == (
        "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam",
    )
    assert infos["limelight.backends.torch"].backend and infos["limelight.backends.tensorflow"].backend
    ours = [p for p in infos.values() if p.name.startswith("limelight.")]
    assert ours and all(p.source == "builtin" and p.error is None for p in ours)
    # third-party plugins installed beside (limelight-onnx in make install) come from entry points
    assert all(p.source == "entry point" for p in infos.values() if not p.name.startswith("limelight."))
    assert set(limelight.explainers()) >= {"gradcam", "gradcam++", "eigencam"}
    assert {"deletion", "road-morf", "pointing-game"} <= set(infos["limelight.evaluation.metrics"].metrics)
    assert all(infos[f"limelight.zoo.{name}"].loader for name in ("torch", "keras", "specs"))


METRIC_PLUGIN = """
import numpy as np
from limelight.evaluation import Metric


class Ones(Metric):
    name = "ones"

    def score(self, maps, **_):
        return np.ones(len(maps))


@limelight_hookimpl
def limelight_register_metrics(register):
    register({registered})
"""


@pytest.mark.parametrize(("registered", "ok"), [("Ones", True), ("int", False)])
def test_metric_plugins_register_metric_subclasses_only(site, registered, ok):
    source = "from limelight import hookimpl as limelight_hookimpl\n" + METRIC_PLUGIN.format(registered=registered)
    module = f"extra_metrics_{registered.lower()}"  # a fresh module per case (sys.modules caches)
    install_plugin(site, "extra", {"extra": module}, {module: source})
    if ok:
        assert limelight.core.registry.registry.metrics()["ones"]()(np.zeros((2, 3, 3))).tolist() == [1.0, 1.0]
    else:
        with pytest.warns(PluginWarning, match=r"'extra' failed to register metrics.*not a Metric subclass"):
            assert "ones" not in limelight.core.registry.registry.metrics()


@pytest.mark.parametrize(
    ("disabled", "gone"),
    [("limelight.plugins.metrics", "limelight.evaluation.metrics"), ("limelight.core.loading", "limelight.zoo.specs")],
)
def test_former_builtin_names_still_disable(fresh_registry, monkeypatch, disabled, gone):
    monkeypatch.setenv("LIMELIGHT_DISABLE_PLUGINS", disabled)
    assert gone not in {p.name for p in limelight.plugins()}
    if gone == "limelight.evaluation.metrics":
        assert "deletion" not in fresh_registry.metrics()


def test_entry_point_plugin_is_discovered_and_broken_one_skipped(site):
    install_plugin(
        site,
        "thirdparty",
        {"third": "thirdparty_cam", "broken": "no_such_module_xyz"},
        {"thirdparty_cam": PLUGIN.format(name="constant")},
    )
    with pytest.warns(PluginWarning, match=r"'broken' failed to load.*ModuleNotFoundError.*no_such_module_xyz"):
        names = limelight.explainers()
    assert "constant" in names and "gradcam" in names
    infos = {p.name: p for p in limelight.plugins()}
    assert infos["third"].source == "entry point"
    assert (infos["third"].distribution, infos["third"].version) == ("thirdparty", "1.0")
    assert infos["third"].explainers == ("constant",)
    assert "ModuleNotFoundError" in infos["broken"].error
    exp = limelight.explain(LinearModel(np.ones(3)), np.zeros((2, 3)), method="constant")
    assert exp.method == "constant" and exp.values.shape == (2,)


def test_strict_mode_reraises(site, monkeypatch):
    install_plugin(site, "brokendist", {"broken": "no_such_module_xyz"}, {})
    monkeypatch.setenv("LIMELIGHT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="'broken' failed to load"):
        limelight.explainers()


def test_disable_blocks_by_entry_point_name(site, monkeypatch):
    install_plugin(site, "thirdparty", {"third": "thirdparty_cam"}, {"thirdparty_cam": PLUGIN.format(name="constant")})
    monkeypatch.setenv("LIMELIGHT_DISABLE_PLUGINS", "third, other")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "constant" not in limelight.explainers()
    assert "third" not in {p.name for p in limelight.plugins()}


def test_a_plugin_taking_a_builtin_name_is_skipped_and_the_rest_loads(site):
    install_plugin(
        site,
        "clash",
        {"clash": "clash_cam", "third": "thirdparty_cam2"},
        {"clash_cam": PLUGIN.format(name="gradcam"), "thirdparty_cam2": PLUGIN.format(name="constant")},
    )
    with pytest.warns(PluginWarning, match=r"'clash' failed to register explainers \(entry point clash = clash_cam\)"
                      r".*'gradcam'.*already registered by plugin 'limelight.plugins.cam'.*"
                      r"LIMELIGHT_DISABLE_PLUGINS=clash"):
        names = limelight.core.registry.registry.explainers()
    assert {"gradcam", "shap-gradient", "eigencam", "constant"} <= set(names)
    assert names["gradcam"].__module__ == "limelight.plugins.cam"
    infos = {p.name: p for p in limelight.plugins()}
    assert infos["clash"].error and infos["clash"].explainers == ()
    assert infos["limelight.plugins.cam"].error is None and "gradcam" in infos["limelight.plugins.cam"].explainers


def test_two_plugins_claiming_one_name_the_later_one_is_skipped(site):
    install_plugin(
        site,
        "twins",
        {"first": "twin_a", "second": "twin_b"},
        {"twin_a": PLUGIN.format(name="twin"), "twin_b": PLUGIN.format(name="twin")},
    )
    with pytest.warns(PluginWarning, match=r"'second' failed to register explainers.*'twin'.*by plugin 'first'"):
        names = limelight.core.registry.registry.explainers()
    assert names["twin"].__module__ == "twin_a" and "gradcam" in names


def test_strict_mode_raises_on_a_clash_and_leaves_nothing_half_loaded(site, monkeypatch):
    install_plugin(site, "clash", {"clash": "clash_cam3"}, {"clash_cam3": PLUGIN.format(name="gradcam")})
    monkeypatch.setenv("LIMELIGHT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"'clash' failed to register explainers.*'gradcam'"):
        limelight.explainers()
    registry = limelight.core.registry.registry
    assert registry._pm is None and not registry._explainers and not registry._records
    monkeypatch.delenv("LIMELIGHT_STRICT_PLUGINS")
    with pytest.warns(PluginWarning, match="'clash'"):
        assert "shap-gradient" in limelight.explainers()


MISSPELLED = """
import limelight


@limelight.hookimpl
def limelight_register_explainer(register):  # the hook is limelight_register_explainers
    pass
"""


def test_a_misspelled_hook_skips_that_plugin_only(site):
    install_plugin(site, "typo", {"typo": "typo_plugin"}, {"typo_plugin": MISSPELLED})
    with pytest.warns(PluginWarning, match=r"'typo' is not a valid limelight plugin \(entry point typo = typo_plugin\)"
                      r".*PluginValidationError.*limelight_register_explainer"):
        assert "gradcam" in limelight.explainers()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at loading; later calls work
        assert "gradcam" in limelight.explainers()
        assert "typo" in {p.name for p in limelight.plugins()}


def test_a_misspelled_hook_raises_in_strict_mode(site, monkeypatch):
    install_plugin(site, "typo", {"typo": "typo_plugin2"}, {"typo_plugin2": MISSPELLED})
    monkeypatch.setenv("LIMELIGHT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="'typo' is not a valid limelight plugin"):
        limelight.explainers()


WRAPPED = """
import limelight

CALLS = []


@limelight.hookimpl(hookwrapper=True)
def limelight_register_explainers(register):
    CALLS.append("wrapped")
    yield
"""


def test_registration_hooks_are_called_through_pluggy(site):
    install_plugin(site, "wrapper", {"wrapper": "wrapper_plugin"}, {"wrapper_plugin": WRAPPED})
    assert "gradcam" in limelight.explainers()
    assert importlib.import_module("wrapper_plugin").CALLS  # a hook wrapper runs: pluggy made the calls


def test_registering_a_non_explainer_is_reported(site):
    source = "import limelight\n@limelight.hookimpl\ndef limelight_register_explainers(register):\n    register(int)\n"
    install_plugin(site, "bad", {"bad": "bad_register"}, {"bad_register": source})
    with pytest.warns(PluginWarning, match="'bad' failed to register explainers"):
        limelight.explainers()


def test_unknown_method_lists_close_names():
    with pytest.raises(UnknownExplainerError, match=r"'gradcm'.*Did you mean: 'gradcam'"):
        limelight.explain(LinearModel(np.ones(3)), np.zeros((1, 3)), method="gradcm")


def test_unknown_parameter_lists_accepted_ones():
    with pytest.raises(ParameterError, match=r"does not accept smoothing.*layer, normalize, precision, relu, reshape, upsample"):
        limelight.explain(LinearModel(np.ones(3)), np.zeros((1, 3)), method="gradcam", smoothing=3)


def test_unwrappable_model():
    with pytest.raises(UnsupportedModelError, match="no installed backend can explain a builtins.dict"):
        limelight.explain({}, np.zeros((1, 3)))


class LinearModel(NumpyModel):
    """f(x) = [x @ w, -(x @ w)] with flat inputs; provides input gradients but no layers."""

    def __init__(self, w):
        super().__init__(w)
        self.calls = 0

    def predict(self, x, *, batch_size=None):
        self.calls += 1
        return np.stack([x @ self.native, -(x @ self.native)], axis=1).astype(np.float32)

    def gradients(self, x, target, layer=None, *, batch_size=None):
        self.calls += 1
        outputs = self.predict(x)
        target = target.check(outputs.shape[1])
        classes = np.asarray(target.classes(self.xp, outputs, *target.data()))[:, 0]
        sign = np.where(classes == 0, 1.0, -1.0)[:, None]
        return Gradients(outputs, x, sign * self.native[None, :])


def test_missing_capability_fails_before_any_work():
    model = LinearModel(np.ones(3))
    assert isinstance(model, SupportsGradients) and not isinstance(model, SupportsLayers)
    with pytest.raises(UnsupportedError, match=r"'gradcam' needs the backend capability SupportsLayers.*numpy"):
        limelight.explain(model, np.zeros((2, 3)), method="gradcam")
    assert model.calls == 0


def test_an_explainer_written_once_runs_on_any_backend():
    class InputTimesGradient(Explainer):
        name = "input-x-gradient"
        requires = (SupportsGradients,)

        def explain(self, x, target):
            g = self.model.gradients(x, target, batch_size=self.batch_size)
            return self.result(x, g.activations * g.gradients, self.classes(target, g.outputs), g.outputs)

    w = np.array([1.0, -2.0, 3.0])
    x = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    exp = InputTimesGradient(LinearModel(w))(x.astype(np.float32), np.array([0, 1]))
    np.testing.assert_allclose(exp.values, [w * x[0], -w * x[1]])
    assert exp.targets.tolist() == [0, 1]
