"""Probe fixes in viz: panel titles of targets that are no class (Function) and of a class of
dense outputs (Region); explanations that do not line up in a comparison grid."""

from __future__ import annotations

import numpy as np
import pytest

import limelight
from limelight import Explanation, viz
from limelight import targets as T
from limelight.core.errors import InputError

pytest.importorskip("matplotlib")
torch = pytest.importorskip("torch")


def _titles(fig):
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    import matplotlib.pyplot as plt

    plt.close(fig)
    return titles


def _classifier():
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


def test_a_function_target_is_titled_score_without_a_class_output():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    f = limelight.explain(_classifier(), x, "gradcam", targets=T.Function(lambda xp, o: o[:, 0] - o[:, 1]))
    assert _titles(viz.comparison_grid({"f": f})) == ["input", "f\nscore"]
    assert _titles(viz.comparison_grid({"f": f}, class_names=list("abcde"))) == ["input", "f\nscore"]
    assert _titles(f.plot(class_names=list("abcde"))) == ["gradcam: score"]
    c = limelight.explain(_classifier(), x, "gradcam", targets=4)  # a class keeps its name and score
    assert _titles(viz.comparison_grid({"c": c}, class_names=list("abcde"))) == [
        "input", f"c\ne ({float(c.outputs[0, 4]):.2f})"]


def test_a_region_target_on_dense_outputs_is_titled_with_its_class():
    nn = torch.nn
    torch.manual_seed(0)
    seg = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    mask = np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = limelight.explain(seg, x, "gradcam", layer="1", targets=T.Region(class_=2, mask=mask))
    assert _titles(viz.comparison_grid({"r": r})) == ["input", "r\n2", "2"]
    assert _titles(viz.comparison_grid({"r": r}, class_names=["bg", "a", "road", "c"])) == ["input", "r\nroad", "road"]
    assert _titles(r.plot(0)) == ["gradcam: class 2"]


def test_too_few_class_names_is_a_clear_error():
    exp = Explanation(method="m", values=np.zeros((1, 4, 4)), targets=[3], outputs=np.zeros((1, 5)))
    with pytest.raises(InputError, match="class_names has 2 names; the explained class 3"):
        viz.comparison_grid({"e": exp}, class_names=["a", "b"])


def _exp(n, h=4, w=4, seed=0):
    rng = np.random.RandomState(seed)
    return Explanation(method="m", values=rng.rand(n, h, w), targets=np.zeros(n, int), outputs=rng.rand(n, 3),
                       inputs=rng.rand(n, h, w, 3))


def test_explanations_of_other_images_are_a_clear_error_in_a_grid():
    e = _exp(2)
    with pytest.raises(InputError, match=r"'first' has 1 samples of \(4, 4\) and 'all' 2 of \(4, 4\)"):
        viz.comparison_grid({"all": e, "first": e[:1]})
    with pytest.raises(InputError, match=r"'big' has 2 samples of \(6, 6\)"):
        viz.comparison_grid({"all": e, "big": _exp(2, 6, 6)})
    with pytest.raises(InputError, match=r"masks have shape \(2, 5, 4\); the explanations need \(N, H, W\) = \(2, 4, 4\)"):
        viz.comparison_grid({"all": e}, masks=np.zeros((2, 5, 4), bool))
    assert len(_titles(viz.comparison_grid({"a": e, "b": _exp(2, seed=1)}))) == 5  # aligned: drawn, 2 rows
