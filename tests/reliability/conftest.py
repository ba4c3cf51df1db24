"""
The reliability suite: every test under tests/reliability is marked
C{reliability} (run it alone with C{pytest -m reliability}), and what each
scenario measured is printed after the run (and written, as JSON, to
C{$MUXPOOL_RELIABILITY_REPORT} when that is set).

C{MUXPOOL_RELIABILITY=full} runs the longer variant (more rounds, a longer
soak, longer fuzzing); the default is the one CI runs.
"""

import json
import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_figures = {}


@pytest.hookimpl(tryfirst=True)  # before -m selects by it
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def figures(request):
    """
    A dict a scenario fills with what it measured (printed at the end).
    """
    measured = {}
    yield measured
    if measured:
        _figures[request.node.nodeid.split("::", 1)[-1]] = measured


def pytest_terminal_summary(terminalreporter):
    if not _figures:
        return
    terminalreporter.section("reliability: what each scenario measured")
    for name, measured in _figures.items():
        terminalreporter.write_line(name)
        for key, value in measured.items():
            terminalreporter.write_line(f"    {key}: {value}")
    target = os.environ.get("MUXPOOL_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(json.dumps(_figures, indent=2, default=str))
