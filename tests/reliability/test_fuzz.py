"""
Fuzzing, bounded: every input kept in tests/reliability/corpus replays
clean, then each target is fuzzed for a while: coverage-guided with
atheris where it is installed (CPython), with Hypothesis otherwise (PyPy).
C{MUXPOOL_FUZZ_SECONDS} sets how long per target (20 s; 600 s in the full
variant).  See tests/reliability/fuzzing.py for the targets and fuzz.py
for the longer command.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.reliability.fuzzing import CORPUS, TARGETS
from tests.reliability.scenario import scaled

SECONDS = int(os.environ.get("MUXPOOL_FUZZ_SECONDS", scaled(20, 600)))

try:
    import atheris  # noqa: F401

    ATHERIS = True
except ImportError:
    ATHERIS = False


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_corpus_replays_clean(target, figures):
    inputs = sorted((CORPUS / target).iterdir())
    assert len(inputs) >= 5, f"the {target} corpus is missing"
    for path in inputs:
        TARGETS[target](path.read_bytes())
    figures["corpus inputs"] = len(inputs)


@pytest.mark.skipif(not ATHERIS, reason="atheris is not installed (CPython only)")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_coverage_guided(target, tmp_path, figures):
    """
    atheris (libFuzzer) from the corpus for SECONDS: no exception, no
    input slower than 5 s, no more than 1 GB resident.
    """
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS / target, corpus)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.fuzz",
            target,
            f"-max_total_time={SECONDS}",
            "-timeout=5",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    found = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))
    ]
    assert run.returncode == 0 and not found, run.stderr[-4000:]
    done = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", run.stderr)
    assert done, run.stderr[-2000:]
    runs, cov, ft = map(int, done[-1])
    figures.update(
        {
            "executions": runs,
            "seconds": SECONDS,
            "coverage edges": cov,
            "features": ft,
            "new inputs": len(list(corpus.iterdir())) - len(list((CORPUS / target).iterdir())),
        }
    )


@pytest.mark.skipif(ATHERIS, reason="atheris runs these instead")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_hypothesis(target, figures):
    """
    Without atheris: Hypothesis's random inputs for SECONDS.
    """
    ends = time.monotonic() + SECONDS
    count = []

    @settings(
        max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.binary(max_size=4096))
    def fuzz(data):
        count.append(1)
        TARGETS[target](data)

    while time.monotonic() < ends:  # batches of 500 until the time is up
        fuzz()
    figures.update({"executions": len(count), "seconds": SECONDS})
