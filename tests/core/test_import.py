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
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_plugins_and_evaluation_never_import_frameworks():
    """Static check: no module under core/, plugins/ or evaluation/ imports torch or tensorflow."""
    import pathlib

    import limelight

    root = pathlib.Path(limelight.__file__).parent
    for folder in ("core", "plugins", "evaluation"):
        for path in (root / folder).glob("*.py"):
            text = path.read_text()
            for framework in ("torch", "tensorflow", "keras"):
                assert f"import {framework}" not in text, f"{path} imports {framework}"


def test_missing_framework_gives_install_hint():
    missing = LazyModule("limelight_no_such_framework", extra="torch")
    assert not missing.loaded
    with pytest.raises(FrameworkNotInstalledError, match=r"pip install 'limelight\[torch\]'"):
        missing.anything  # noqa: B018 - the attribute access is the test


def test_moved_modules_keep_their_old_names():
    """evaluation/ and zoo/ took over modules of core/, plugins/ and demo/: the old import
    paths re-export the same objects."""
    import limelight.core.evaluate
    import limelight.core.loading
    import limelight.core.metric
    import limelight.core.sanity
    import limelight.demo.benchmark
    import limelight.plugins.metrics
    from limelight import evaluation, zoo

    assert limelight.core.metric.Metric is evaluation.Metric
    assert limelight.core.metric.relevance_map is evaluation.relevance_map
    assert limelight.core.evaluate.evaluate is evaluation.evaluate is limelight.evaluate
    assert limelight.core.evaluate.Evaluation is evaluation.Evaluation
    assert limelight.core.sanity.cascading_randomization is evaluation.cascading_randomization
    assert limelight.plugins.metrics.Deletion is evaluation.Deletion
    assert limelight.plugins.metrics.BUILTIN_METRICS is evaluation.BUILTIN_METRICS
    assert limelight.demo.benchmark.run is evaluation.benchmark.run
    assert limelight.core.loading.load_model is zoo.load_model
