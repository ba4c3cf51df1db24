"""
What a user installs, used as a user uses it: the venv's own `twistd` finds
the muxpool plugin from any folder, and a user's own strategy package,
pip-installed into that venv, is loaded by twistd both as a Twisted plugin
and as a strategy-handler class.
"""

import json
import subprocess
import textwrap

import pytest

from tests.conftest import ROOT
from tests.deployfiles import freePort, front, member, pool
from tests.twistdproc import BIN, TWISTD, Twistd, environment, tool


def test_twistd_finds_muxpool_from_any_folder(tmp_path):
    listed = subprocess.run(
        [TWISTD, "--help"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0
    assert any(line.split()[:1] == ["muxpool"] for line in listed.stdout.splitlines()), (
        listed.stdout
    )
    own = subprocess.run(
        [TWISTD, "muxpool", "--help"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert own.returncode == 0 and "--deploy" in own.stdout


USER_PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
    """,
    "setup.cfg": """
        [metadata]
        name = acme-switch-strategies
        version = 1.0

        [options]
        py_modules = acme_strategies
        packages = twisted.plugins
    """,
    "acme_strategies.py": """
        from zope.interface import implementer
        from muxpool.interfaces import IStrategy

        @implementer(IStrategy)
        class LastMember:
            name = "last-member"

            def __init__(self, config):
                pass

            def select(self, pool, message):
                usable = [m for m in pool.members if pool.isUsable(m)]
                return usable[-1] if usable else None
    """,
    "twisted/plugins/acme_strategy_plugin.py": """
        from twisted.plugin import IPlugin
        from zope.interface import implementer
        from muxpool.interfaces import IStrategy

        @implementer(IPlugin, IStrategy)
        class FirstMember:
            name = "acme-first"

            def select(self, pool, message):
                usable = [m for m in pool.members if pool.isUsable(m)]
                return usable[0] if usable else None

        acmeFirst = FirstMember()
    """,
}


@pytest.fixture
def userStrategies(tmp_path):
    """
    The user's own package, pip-installed into the venv the tests run in,
    and uninstalled afterwards.
    """
    source = tmp_path / "acme"
    for name, text in USER_PACKAGE.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(textwrap.dedent(text))
    pip = [str(BIN / "python"), "-m", "pip"]
    installed = subprocess.run(
        pip + ["install", "-q", "--no-deps", str(source)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        yield
    finally:
        subprocess.run(
            pip + ["uninstall", "-q", "-y", "acme-switch-strategies"],
            env=environment(),
            capture_output=True,
            timeout=120,
        )


def test_a_users_strategy_package_is_found_by_twistd(tmp_path, userStrategies):
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    member(deploy, 1)
    member(deploy, 2)
    (deploy / "40_by-plugin.xml").write_text(
        pool("by-plugin", ["core-mux-1", "core-mux-2"], strategy="acme-first")
    )
    (deploy / "41_by-handler.xml").write_text(
        "<mux class='org.jpos.q2.iso.MUXPool' name='by-handler'>"
        "<muxes>core-mux-1 core-mux-2</muxes>"
        "<strategy-handler class='acme_strategies.LastMember'/></mux>"
    )
    ports = {"by-plugin": freePort(), "by-handler": freePort()}
    for i, (mux, port) in enumerate(ports.items()):
        (deploy / f"5{i}_front.xml").write_text(front(f"front-{mux}", port, mux))
    proc = Twistd(deploy, tmp_path)  # run from a folder that holds none of the code
    try:
        proc.waitFor("front-by-handler: listening")
        proc.waitFor("channel-1: connected")
        proc.waitFor("channel-2: connected")
        splits = {}
        for mux, port in ports.items():
            load = tool(
                "load", "--endpoint", f"tcp:127.0.0.1:{port}", "-n", "20", "--json", "--quiet"
            )
            assert load.returncode == 0, load.stdout + load.stderr
            splits[mux] = json.loads(load.stdout)["split"]
        assert splits == {"by-plugin": {"issuer-1": 20}, "by-handler": {"issuer-2": 20}}
        assert "cannot deploy" not in proc.log
    finally:
        code = proc.stop()
    assert code == 0, proc.log[-2000:]


def test_the_sdist_carries_the_demo_and_the_suite(tmp_path):
    """
    The source distribution holds what README's commands and the test
    suite need: the demo's deploy folder, the tests with their helpers and
    fixtures, and the package data.
    """
    # From a copy of the files git has (no egg-info whose list of files
    # setuptools would reuse): what a clean checkout builds.
    import importlib.util
    import shutil

    if not (ROOT / ".git").exists() or importlib.util.find_spec("setuptools") is None:
        pytest.skip("builds an sdist from a git checkout, with setuptools")
    import sys
    import tarfile

    source = tmp_path / "source"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "sdist",
            "-d",
            str(tmp_path),
        ],
        cwd=str(source),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [archive] = tmp_path.glob("muxpool-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    wanted = {
        "README.md",
        "setup.cfg",
        "pyproject.toml",
        "twisted/plugins/muxpool_plugin.py",
        "muxpool/py.typed",
        "muxpool/ops/statuspage.html",
        "examples/demo/deploy/40_switch.xml",
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/deployfiles.py",
        "tests/twistdproc.py",
        "tests/logcapture.py",
        "tests/fixtures/jpos-article/30_mux_pool.xml",
        ".ci/run",
    }
    assert wanted - names == set()
    tests = {p.name for p in (ROOT / "tests").glob("*.py")}
    assert {name.split("/")[-1] for name in names if name.startswith("tests/")} >= tests
