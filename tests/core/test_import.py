import subprocess
import sys

import pytest

from limelight.core.errors import FrameworkNotInstalledError
from limelight.core.lazy import LazyModule


def test_import_limelight_pulls_no_framework():
    code = (
        "import sys, limelight; limelight.explainers(); limelight.plugins(); "
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_and_plugins_never_import_frameworks():
    """Static check: no module under core/ or plugins/ imports torch or tensorflow."""
    import pathlib

    import limelight

    root = pathlib.Path(limelight.__file__).parent
    for folder in ("core", "plugins"):
        for path in (root / folder).glob("*.py"):
            text = path.read_text()
            for framework in ("torch", "tensorflow", "keras"):
                assert f"import {framework}" not in text, f"{path} imports {framework}"


def test_missing_framework_gives_install_hint():
    missing = LazyModule("limelight_no_such_framework", extra="torch")
    assert not missing.loaded
    with pytest.raises(FrameworkNotInstalledError, match=r"pip install 'limelight\[torch\]'"):
        missing.anything
