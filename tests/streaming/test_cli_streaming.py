"""``limelight explain DIR --out X.zarr``: streamed into a results store, resumable, quiet."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("zarr")

import limelight
from tests import test_cli
from tests.test_cli import main, save

tiny = test_cli.tiny  # the tiny user-model fixture (--model limelight_cli_tiny:make)


@pytest.fixture
def folder(tmp_path):
    for i in range(7):
        save(tmp_path / "imgs" / ("sub" if i % 2 else ".") / f"{i}.png", seed=i)
    (tmp_path / "imgs" / "sub" / "9_bad.png").write_bytes(b"not a png")
    return tmp_path / "imgs"


def test_explain_a_folder_into_a_zarr_store_then_resume(tiny, folder, tmp_path, capsys):
    out = tmp_path / "maps.zarr"
    args = ["explain", folder, "--recursive", "--model", tiny, "--method", "gradcam", "--out", out,
            "--batch-size", 4, "--size", 32]
    code, stdout, errors = main(capsys, *args)
    assert code == 1 and not errors  # 1: some image failed; the rest is in the store
    res = limelight.open_results(out)
    assert len(res) == 8 and res.values.shape == (8, 32, 32) and res.values.chunks[0] == 4
    bad = str(folder / "sub" / "9_bad.png")
    assert res.failures[0][0] == bad and np.isfinite(res.values[~np.asarray(res.failed)]).all()
    assert "8 images (7 explained, 1 failed)" in stdout and bad in stdout and "maps.zarr" in stdout
    assert not list(folder.parent.glob("*.png"))  # no PNG overlays for a .zarr run
    code, _, errors = main(capsys, *args)  # again, without --resume: refused, store untouched
    assert code == 2 and len(errors) == 1 and "already exists" in errors[0] and "--resume" in errors[0]
    code, stdout, errors = main(capsys, *args, "--resume", "--quiet")
    assert code == 1 and "resumed: 8 rows" in stdout and "0 images" in stdout
    code, _, errors = main(capsys, *args[:-4], "--batch-size", 2, "--size", 32, "--resume")
    assert code == 2 and "cannot resume" in errors[0] and "batch_size" in errors[0]


def test_quiet_prints_only_the_summary_and_bad_options_are_one_line(tiny, folder, tmp_path, capsys):
    out = tmp_path / "q.zarr"
    from limelight import cli

    code = cli.main(["explain", str(folder), "--model", tiny, "--out", str(out), "--size", "16", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "" and captured.out.startswith("gradcam: 4 images (4 explained, 0 failed)")
    code, _, errors = main(capsys, "explain", folder, "--model", tiny, "--method", "gradcam,gradcam++",
                           "--out", tmp_path / "two.zarr")
    assert code == 2 and "holds one method" in errors[0]
    code, _, errors = main(capsys, "explain", folder, "--model", tiny, "--method", "gradkam", "--out", tmp_path / "x.zarr")
    assert code == 2 and "gradkam" in errors[0] and not (tmp_path / "x.zarr").exists()
