"""Models behind torch's wrappers — ``torch.compile`` (``OptimizedModule``), ``DataParallel``
and both nested either way — are explained through the module they wrap, also after they ran
(dynamo's graph then has no hooks): the inner layer names (``layer="2"``) and the wrapper's
(``"module._orig_mod.2"``) both work, and the maps are the unwrapped model's. A module of
the user's own with an ``_orig_mod`` attribute is not unwrapped."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import limelight
from limelight.core.errors import LayerError
from tests.conftest import small_torch_cnn

LAYER = "2"  # small_torch_cnn's second convolution


def _wrappers(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str]]:
    """name -> (wrapped copy, the wrapper's prefix of its layer names). ``backend="eager"``:
    the same ``OptimizedModule`` wrapper, without needing a C++ compiler on the test machine."""
    return {
        "compile": (torch.compile(copy.deepcopy(model), backend="eager"), "_orig_mod."),
        "DataParallel": (torch.nn.DataParallel(copy.deepcopy(model)), "module."),
        "compile(DataParallel)": (
            torch.compile(torch.nn.DataParallel(copy.deepcopy(model)), backend="eager"),
            "_orig_mod.module.",
        ),
        "DataParallel(compile)": (
            torch.nn.DataParallel(torch.compile(copy.deepcopy(model), backend="eager")),
            "module._orig_mod.",
        ),
    }


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_wrapped_models_take_the_inner_layer_names(method: str) -> None:
    torch.manual_seed(0)
    model = small_torch_cnn().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    want = limelight.explain(model, x, method, targets=[1, 2], layer=LAYER)
    for name, (wrapped, prefix) in _wrappers(model).items():
        with torch.no_grad():
            wrapped(x)  # ordinary inference first: a compiled graph without hooks exists
        got = limelight.explain(wrapped, x, method, targets=[1, 2], layer=LAYER)
        assert got.params["layer"] == LAYER, name  # explained through the inner module
        np.testing.assert_allclose(got.values, want.values, atol=1e-5, err_msg=name)
        # the wrapper's full name works too, and the wrapped model runs as before
        full = limelight.explain(wrapped, x, method, targets=[1, 2], layer=prefix + LAYER)
        np.testing.assert_array_equal(full.values, got.values)
        with torch.no_grad():
            np.testing.assert_allclose(wrapped(x).numpy(), model(x).numpy(), atol=1e-5, err_msg=name)


def test_a_name_no_wrapper_explains_is_still_unknown() -> None:
    model = torch.nn.DataParallel(small_torch_cnn().eval())
    with pytest.raises(LayerError, match="unknown layer 'nope'"):
        limelight.explain(model, torch.randn(1, 3, 16, 16), "gradcam", targets=0, layer="nope")


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_a_compiled_model_that_already_ran(method: str) -> None:
    """Ordinary inference first: dynamo's graph has no hooks (a LayerError "did not run" before),
    and the default layer is found as on the eager model."""
    torch.manual_seed(0)
    model = small_torch_cnn().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(copy.deepcopy(model), backend="eager")
    with torch.no_grad():
        compiled(x)
    for layer in (LAYER, None):
        want = limelight.explain(model, x, method, targets=[1, 2], layer=layer)
        got = limelight.explain(compiled, x, method, targets=[1, 2], layer=layer)
        assert got.params["layer"] == want.params["layer"]
        np.testing.assert_allclose(got.values, want.values, atol=1e-6)
    table = limelight.evaluate(compiled, x, ["gradcam"], ["deletion"], targets=[1, 2]).table()
    assert np.isfinite(table["gradcam"]["deletion"])


def test_a_module_of_ones_own_named_orig_mod_is_not_unwrapped() -> None:
    """Only torch.compile's OptimizedModule is unwrapped: a user's head after an `_orig_mod`
    child stays in the explained model."""

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._orig_mod = small_torch_cnn()
            self.head = torch.nn.Linear(small_torch_cnn()[-1].out_features, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self._orig_mod(x))

    torch.manual_seed(0)
    model = Outer().eval()
    exp = limelight.explain(model, torch.randn(1, 3, 16, 16), "gradcam", targets=0, layer="_orig_mod.2")
    assert exp.outputs.shape == (1, 3)
    assert limelight.wrap(model).native is model
