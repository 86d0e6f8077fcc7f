"""Canaries for the frameworks' private APIs limelight relies on, and the packaging rules that
protect users from them (upper bounds) and from a second TensorFlow distribution.

Each canary fails with a message naming the private API that broke and where limelight uses
it: fix that place first, then raise the bound in pyproject.toml."""

import pathlib
import re
import sys

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def broke(api: str, where: str, exc: BaseException) -> None:
    pytest.fail(
        f"private API {api} broke ({type(exc).__name__}: {exc}); limelight uses it in {where}. "
        "Fix that place, then raise the framework's upper bound in pyproject.toml.",
        pytrace=False,
    )


# -- torchvision (imported before TensorFlow) -------------------------------------------------

def test_torchvision_presets_image_classification():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    api = "torchvision.transforms._presets.ImageClassification(crop_size=, resize_size=)"
    try:
        from torchvision.transforms._presets import ImageClassification

        transform = ImageClassification(crop_size=8, resize_size=10)
        out = transform(torch.rand(2, 3, 12, 16))
        assert tuple(out.shape) == (2, 3, 8, 8), f"output shape {tuple(out.shape)}"
        assert list(transform.mean) == [0.485, 0.456, 0.406] and list(transform.std) == [0.229, 0.224, 0.225]
    except Exception as exc:  # noqa: BLE001 - any failure is the canary's message
        broke(api, "limelight/zoo/presets.py (imagenet_transform)", exc)


# -- TensorFlow ---------------------------------------------------------------------------------

DEEPLIFT = "limelight/backends/tensorflow_deeplift.py (deeplift_rules)"


@pytest.fixture(scope="module")
def tf():
    pytest.importorskip("torch")  # torch before TensorFlow in one process
    return pytest.importorskip("tensorflow")


def test_tensorflow_gradient_registry(tf):
    api = "tensorflow.python.framework.ops._gradient_registry._registry"
    try:
        from tensorflow.python.framework import ops

        table = ops._gradient_registry._registry
        assert isinstance(table, dict), f"a {type(table).__name__}, not a dict"
        for name in ("Relu", "MaxPool", "Softmax", "Sigmoid"):
            entry = table[name]
            assert callable(entry["type"]), f"{name}'s entry has no callable 'type'"
            assert "location" in entry, f"{name}'s entry has no 'location'"
    except Exception as exc:  # noqa: BLE001
        broke(api, DEEPLIFT, exc)


def test_tensorflow_record_gradient_is_called_through_the_module(tf):
    api = "tensorflow.python.eager.execute.record_gradient"
    try:
        from tensorflow.python.eager import execute

        original = execute.record_gradient
        seen = []

        def spy(op_name, inputs, attrs, results):
            seen.append(op_name)
            return original(op_name, inputs, attrs, results)

        @tf.function(autograph=False)  # limelight traces its DeepLIFT pass the same way
        def relu_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.relu(x)
            return tape.gradient(y, x)

        execute.record_gradient = spy
        try:
            grad = relu_gradient(tf.constant([[-1.0, 2.0]]))
        finally:
            execute.record_gradient = original
        assert "Relu" in seen, f"eager ops did not call the patched function (saw {seen})"
        assert grad.numpy().tolist() == [[0.0, 1.0]]
    except Exception as exc:  # noqa: BLE001
        broke(api, DEEPLIFT, exc)


def test_tensorflow_max_pool_grad(tf):
    api = "tensorflow.python.ops.gen_nn_ops.max_pool_grad(ksize=, strides=, padding=, data_format=)"
    try:
        from tensorflow.python.ops import gen_nn_ops

        x = tf.reshape(tf.range(16, dtype=tf.float32), (1, 4, 4, 1))
        attrs = dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID", data_format="NHWC")
        y = tf.nn.max_pool2d(x, 2, 2, "VALID")
        grad = gen_nn_ops.max_pool_grad(x, y, tf.ones_like(y), **attrs)
        assert tuple(grad.shape) == (1, 4, 4, 1) and float(tf.reduce_sum(grad)) == 4.0
    except Exception as exc:  # noqa: BLE001
        broke(api, DEEPLIFT + " (_max_pool)", exc)


# -- packaging ----------------------------------------------------------------------------------

def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}


def resolve(extra: str, table: dict[str, list[Requirement]]) -> dict[str, Requirement]:
    """Every distribution an extra asks for, following ``limelight[...]`` self-references."""
    found: dict[str, Requirement] = {}
    for req in table[extra]:
        if req.name == "limelight":
            for inner in req.extras:
                found.update(resolve(inner, table))
        else:
            found[re.sub(r"[-_.]+", "-", req.name).lower()] = req
    return found


@pytest.mark.parametrize("extra", ["tensorflow", "tensorflow-cpu", "all", "dev"])
def test_an_extra_installs_one_distribution_of_the_tensorflow_package(extra):
    names = set(resolve(extra, extras()))
    assert len(names & {"tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-gpu"}) == 1, names


def test_the_tensorflow_extra_is_satisfied_by_a_users_tensorflow_and_dev_uses_tensorflow_cpu():
    table = extras()
    assert "tensorflow" in resolve("tensorflow", table) and "tensorflow" in resolve("all", table)
    assert "tensorflow-cpu" in resolve("dev", table)  # CI: constraints.txt pins tensorflow-cpu
    pins = PYPROJECT.with_name("constraints.txt").read_text(encoding="utf-8").lower()
    assert re.search(r"^tensorflow[-_]cpu==", pins, re.M) and not re.search(r"^tensorflow==", pins, re.M)


@pytest.mark.parametrize(("extra", "name"), [("tensorflow", "tensorflow"), ("tensorflow-cpu", "tensorflow-cpu"),
                                             ("torch", "torchvision")])
def test_frameworks_with_private_apis_have_upper_bounds(extra, name):
    req = resolve(extra, extras())[name]
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in req.specifier), f"{req} has no upper bound"


def numpy_requirement(pyproject: pathlib.Path = PYPROJECT) -> Requirement:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found = [Requirement(r) for r in project["dependencies"] if Requirement(r).name.lower() == "numpy"]
    assert len(found) == 1, project["dependencies"]
    return found[0]


def test_numpy_has_a_floor_of_2():
    """limelight calls ``np.trapezoid`` (NumPy >= 2.0): the dependency must not admit 1.x."""
    from packaging.version import Version

    req = numpy_requirement()
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", ">", "~=", "==")]
    assert floors and min(floors) >= Version("2"), f"{req}: needs a minimum of numpy 2"
    assert not req.specifier.contains("1.26.4") and req.specifier.contains("2.0.0"), str(req)
