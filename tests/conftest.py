"""
Shared test helpers: where the jPOS interop vectors live; every twistd a
test started ends with the test.
"""

import json
import os
from pathlib import Path

import pytest

from tests.twistdproc import endAll

ROOT = Path(__file__).resolve().parent.parent
INTEROP = Path(os.environ.get("MUXPOOL_INTEROP", ROOT.parent / "shared" / "interop"))


def interopLines(relative: str):
    """
    The JSON lines of one interop file; skips (with the reason) if absent.
    """
    path = INTEROP / relative
    if not path.exists():
        pytest.skip(f"jPOS interop vectors not found at {path} (set MUXPOOL_INTEROP)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def interopPath(relative: str) -> str:
    path = INTEROP / relative
    if not path.exists():
        pytest.skip(f"jPOS interop vectors not found at {path} (set MUXPOOL_INTEROP)")
    return str(path)


@pytest.fixture(autouse=True)
def _endProcesses():
    """
    A test that fails before stopping its twistd processes leaves none
    running.
    """
    yield
    endAll()
