import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "limelight.cli", *args], capture_output=True, text=True)


def test_plugins_lists_builtins_and_what_they_provide():
    done = run("plugins")
    assert done.returncode == 0, done.stderr
    assert "limelight.plugins.cam  (builtin, limelight" in done.stdout
    assert "explainers: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, eigengradcam" in done.stdout
    assert "limelight.backends.torch" in done.stdout and "backend" in done.stdout


def test_methods_lists_names_with_a_summary():
    done = run("methods")
    assert done.returncode == 0
    lines = dict(line.split(maxsplit=1) for line in done.stdout.splitlines())
    assert lines["gradcam"].startswith("Grad-CAM (Selvaraju")
    assert set(lines) >= {"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"}


def test_unknown_command_fails_cleanly():
    done = run("frobnicate")
    assert done.returncode != 0 and "invalid choice" in done.stderr
