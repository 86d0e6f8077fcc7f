"""Probe fixes in the CLI: numeric options checked by argparse (one ``limelight: error:``
line, exit 2, nothing written); a failed first .zarr run leaves no store; ``--layer`` goes
only to the methods that take a layer."""

import pytest

pytest.importorskip("torch")

from tests import test_cli
from tests.test_cli import main, save

tiny = test_cli.tiny  # --model limelight_cli_tiny:make


@pytest.fixture
def image(tmp_path):
    save(tmp_path / "a.png", seed=1, shape=(20, 30))
    return tmp_path / "a.png"


@pytest.mark.parametrize(("option", "value"), [
    ("--size", "-5"), ("--size", "0"), ("--size", "x"), ("--batch-size", "0"), ("--batch-size", "-2"),
    ("--num-workers", "0"), ("--num-gpus-per-worker", "-1"), ("--num-gpus-per-worker", "nan"),
])
def test_bad_numbers_are_one_usage_error_line_and_nothing_written(tiny, image, tmp_path, capsys, option, value):
    for out in (tmp_path / "o", tmp_path / "z.zarr"):
        with pytest.raises(SystemExit) as exit_:
            main(capsys, "explain", image, "--model", tiny, "--out", out, option, value)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"limelight: error: argument {option}: must be ") and repr(value) in err
        assert not out.exists()


@pytest.mark.parametrize("args", [["benchmark", "--images", "0"], ["benchmark", "--seeds", "-1"],
                                  ["demo", "--benchmark-images", "0"], ["demo", "--benchmark-seeds", "0"]])
def test_benchmark_and_demo_counts_must_be_positive(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(capsys, *args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"limelight: error: argument {args[1]}: must be a positive integer")


def test_a_setup_error_leaves_no_store_and_the_corrected_rerun_works(tiny, image, tmp_path, capsys):
    out = tmp_path / "z2.zarr"
    code, _, errors = main(capsys, "explain", image, "--model", tiny, "--size", 16, "--layer", "nope", "--out", out, "-q")
    assert code == 2 and len(errors) == 1 and "unknown layer 'nope'" in errors[0] and not out.exists()
    code, stdout, errors = main(capsys, "explain", image, "--model", tiny, "--size", 16, "--layer", "features.0",
                                "--out", out, "-q")
    assert code == 0 and not errors and "1 images (1 explained, 0 failed)" in stdout


def test_layer_goes_only_to_the_methods_that_take_one(tiny, image, tmp_path, capsys):
    import json

    out = tmp_path / "o"
    code, _, errors = main(capsys, "explain", image, "--model", tiny, "--size", 16, "--out", out,
                           "--method", "gradcam,shap,rise", "--layer", "features.0")
    assert code == 0 and not errors
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layers"] == {"gradcam": "features.0", "shap": None, "rise": None}


@pytest.mark.parametrize(("extra", "option"), [(["--method", "shap,rise", "--layer", "1"], "--layer"),
                                               (["--method", "gradcam", "--background", "4"], "--background"),
                                               (["--method", "rise", "--layer", "1", "--out", "x.zarr"], "--layer")])
def test_a_per_method_option_no_chosen_method_takes_is_an_error(tiny, image, tmp_path, capsys, monkeypatch, extra, option):
    monkeypatch.chdir(tmp_path)
    code, _, errors = main(capsys, "explain", image, "--model", tiny, "--size", 16, "--out", "o", *extra)
    param = option.lstrip("-")
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"limelight: error: {option}: none of the methods")
    assert f"takes a {param}; it is for " in errors[0] and ("gradcam" if param == "layer" else "shap") in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_unknown_method_fails_before_any_work(tiny, tmp_path, capsys):
    code, _, errors = main(capsys, "explain", tmp_path / "missing.png", "--model", tiny, "--method", "gradcam,gradkam",
                           "--out", tmp_path / "o")
    assert code == 2 and "gradkam" in errors[0] and "missing.png" not in errors[0]


@pytest.mark.parametrize("spec", [",", " , "])
def test_a_method_list_naming_no_method_is_an_error(tiny, image, tmp_path, capsys, spec):
    for out in (tmp_path / "o", tmp_path / "z.zarr"):
        code, _, errors = main(capsys, "explain", image, "--model", tiny, "--method", spec, "--out", out)
        assert code == 2 and len(errors) == 1  # (a raw StopIteration before, for a folder --out)
        assert ("names no method" if out.suffix != ".zarr" else "holds one method; got 0") in errors[0]
        assert not out.exists()
