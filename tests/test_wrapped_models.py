"""Models behind torch's wrappers — ``torch.compile`` (``OptimizedModule``), ``DataParallel``
and both nested — take the wrapped model's layer names (``layer="2"``, not
``"_orig_mod.2"``) and give the maps of the unwrapped model. A compiled model is explained
through its eager module, also after it ran (dynamo's graph then has no hooks)."""

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
    """name -> (wrapped copy, the prefix its recorded layer names carry). ``backend="eager"``: the same
    ``OptimizedModule`` wrapper, without needing a C++ compiler on the test machine."""
    return {
        "compile": (torch.compile(copy.deepcopy(model), backend="eager"), ""),
        "DataParallel": (torch.nn.DataParallel(copy.deepcopy(model)), "module."),
        "compile(DataParallel)": (
            torch.compile(torch.nn.DataParallel(copy.deepcopy(model)), backend="eager"),
            "module.",
        ),
    }


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_wrapped_models_take_the_inner_layer_names(method: str) -> None:
    torch.manual_seed(0)
    model = small_torch_cnn().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    want = limelight.explain(model, x, method, targets=[1, 2], layer=LAYER)
    for name, (wrapped, prefix) in _wrappers(model).items():
        got = limelight.explain(wrapped, x, method, targets=[1, 2], layer=LAYER)
        assert got.params["layer"] == prefix + LAYER, name
        np.testing.assert_allclose(got.values, want.values, atol=1e-5, err_msg=name)
        # the full name still works, and the wrapped model runs as before
        full_name = ("_orig_mod." if "compile" in name else "") + prefix + LAYER
        full = limelight.explain(wrapped, x, method, targets=[1, 2], layer=full_name)
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
