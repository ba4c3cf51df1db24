"""
The public API is type-checked: mypy, with the mypy-zope plugin and the
settings in setup.cfg, finds no error in the package (the "operate it"
issue, part 5).  It is the mypy installed for this interpreter that runs,
so the test checks what the test extra installs.
"""

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_mypy_finds_no_error_in_the_package(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]' installs it)")
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "setup.cfg"),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "muxpool",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("Success: no issues found"), checked.stdout


def test_the_package_ships_its_types():
    assert (ROOT / "muxpool" / "py.typed").is_file()
