"""Probe fix: Explanation.load finds the file Explanation.save wrote for the same path."""

from __future__ import annotations

import numpy as np
import pytest

from limelight import Explanation
from limelight.core.errors import InputError


def _exp():
    rng = np.random.RandomState(0)
    return Explanation(method="gradcam", values=rng.rand(2, 4, 4), targets=[1, 2], outputs=rng.rand(2, 3),
                       params={"layer": "4"}, framework="torch")


@pytest.mark.parametrize("name", ["exp", "exp.npz"])
def test_load_takes_the_path_save_was_given(tmp_path, name):
    exp = _exp()
    written = exp.save(tmp_path / name)
    assert written == tmp_path / "exp.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.npz"]  # no temporary file left
    for path in (tmp_path / name, str(tmp_path / name), written):
        back = Explanation.load(path)
        np.testing.assert_array_equal(back.values, exp.values)
        assert back.targets.tolist() == [1, 2] and back.params["layer"] == "4"


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"no saved explanation at .*nope nor .*nope\.npz"):
        Explanation.load(tmp_path / "nope")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(InputError, match="other.npz is not an explanation written by Explanation.save"):
        Explanation.load(tmp_path / "other")
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(InputError, match="text.npz is not an explanation"):
        Explanation.load(tmp_path / "text.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # a zip header, then nothing
    with pytest.raises(InputError, match="corrupt.npz is not an explanation"):
        Explanation.load(tmp_path / "corrupt.npz")


def test_file_objects_still_work():
    import io

    exp, buffer = _exp(), io.BytesIO()
    assert exp.save(buffer) is None
    buffer.seek(0)
    np.testing.assert_array_equal(Explanation.load(buffer).values, exp.values)
    with pytest.raises(InputError, match="not an explanation"):
        Explanation.load(io.BytesIO(b"garbage"))
