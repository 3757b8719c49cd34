"""The code type-checks under ``mypy --strict`` (configured in pyproject.toml): the public API is typed."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_strict_passes():
    if shutil.which("mypy") is None and subprocess.run([sys.executable, "-m", "mypy", "--version"],
                                                       capture_output=True).returncode != 0:
        pytest.fail("mypy is not installed: pip install -e '.[test]'")
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_public_api_is_declared():
    import indexer
    import search

    for package in (indexer, search):
        missing = [name for name in package.__all__ if not hasattr(package, name)]
        assert missing == [], (package.__name__, missing)
        assert (Path(package.__file__).parent / "py.typed").is_file()
