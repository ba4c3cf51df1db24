"""
The status page, in a real headless browser (Debian's chromium): served by
a real `twistd -n muxpool --admin ...`, it draws each pool with its members
and their state from /status.  Skipped, saying so, where no chromium is
installed (.ci/run installs it when it can).
"""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.deployfiles import freePort
from tests.twistdproc import Twistd, tool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url, profile, *args):
    """
    Chromium, headless, with the flags this closed network needs.
    """
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--window-size=1100,800",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")
def test_the_status_page_draws_the_pools(tmp_path):
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "examples" / "demo" / "deploy", deploy)
    ports = {
        "DEMO_PORT": str(freePort()),
        "ISSUER_A_PORT": str(freePort()),
        "ISSUER_B_PORT": str(freePort()),
    }
    adminPort = freePort()
    switch = Twistd(
        deploy, tmp_path, ports, args=["--admin", f"tcp:{adminPort}:interface=127.0.0.1"]
    )
    try:
        switch.waitFor("core-mux-secondary-channel: ready")
        switch.waitFor("admin API on")
        admin = f"http://127.0.0.1:{adminPort}"
        assert tool("disable", "core-mux-secondary", "--admin", admin).returncode == 0
        page = browse(f"{admin}/", tmp_path / "profile", "--dump-dom")
        shot = browse(f"{admin}/", tmp_path / "profile2", f"--screenshot={tmp_path / 'status.png'}")
    finally:
        assert switch.stop() == 0
    dom = page.stdout
    assert 'data-pool="core-mux"' in dom, dom[-2000:]
    assert 'class="member up" data-member="core-mux-primary"' in dom
    assert 'class="member disabled" data-member="core-mux-secondary"' in dom
    assert "core-mux-primary-channel" in dom and "127.0.0.1:" + ports["DEMO_PORT"] in dom
    assert (tmp_path / "status.png").stat().st_size > 10000, shot.stderr[-2000:]
