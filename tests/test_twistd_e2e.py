"""
End to end: a real C{twistd -n muxpool --deploy DIR} process, driven with
the C{muxpool} command-line tools, stopped with SIGTERM.
"""

import json
import shutil
import time

import pytest

from tests.conftest import ROOT
from tests.deployfiles import freePort, front, issuer, member, pool
from tests.twistdproc import Twistd, startTool, tool

DEMO = ROOT / "examples" / "demo" / "deploy"


@pytest.fixture
def demo(tmp_path):
    """
    The demo switch, from a copy of its folder (someone may be trying
    README's hot-deploy example on the original while the suite runs).
    """
    deploy = tmp_path / "deploy"
    shutil.copytree(DEMO, deploy)
    ports = {
        "DEMO_PORT": str(freePort()),
        "ISSUER_A_PORT": str(freePort()),
        "ISSUER_B_PORT": str(freePort()),
    }
    proc = Twistd(deploy, tmp_path, ports)
    try:
        proc.waitFor("core-mux-primary-channel: connected")
        proc.waitFor("core-mux-secondary-channel: connected")
        proc.waitFor("switch: listening on 127.0.0.1")
        yield proc, f"tcp:127.0.0.1:{ports['DEMO_PORT']}"
    finally:
        proc.stop()


def test_demo_answers_and_splits_evenly(demo):
    proc, endpoint = demo
    sent = tool("send", "--endpoint", endpoint, "--field", "4=000000002500")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "39=00" in sent.stdout and "44=issuer-" in sent.stdout
    assert "476173******0119" in sent.stdout and "4761739001010119" not in sent.stdout
    assert "latency" in sent.stdout

    echo = tool("send", "--endpoint", endpoint, "--mti", "0800")
    assert echo.returncode == 0 and "t=0810" in echo.stdout

    load = tool("load", "--endpoint", endpoint, "-n", "2000", "-c", "20", "-k", "2", "--json")
    assert load.returncode == 0, load.stdout + load.stderr
    summary = json.loads(load.stdout)
    assert summary["answered"] == {"00": 2000}
    assert summary["not_sent"] == summary["outcome_unknown"] == 0
    assert summary["split"] == {"issuer-a": 1000, "issuer-b": 1000}
    assert "\r" not in load.stderr  # no progress bar but on a terminal

    code = proc.stop()
    assert code == 0
    assert "Server Shut Down" in proc.log
    assert "Traceback" not in proc.log
    assert "4761739001010119" not in proc.log


def test_jpos_article_descriptors_run_unchanged(tmp_path):
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "tests" / "fixtures" / "jpos-article", deploy)
    primary, secondary, frontPort = freePort(), freePort(), freePort()
    (deploy / "01_core-a.xml").write_text(issuer("core-a", primary, "core-a", header="6000000000"))
    (deploy / "02_core-b.xml").write_text(
        issuer("core-b", secondary, "core-b", header="6000000000")
    )
    (deploy / "90_front.xml").write_text(front("front", frontPort, "core-mux"))
    env = {
        "CORE_HOST": "127.0.0.1",
        "CORE_PORT_PRIMARY": str(primary),
        "CORE_PORT_SECONDARY": str(secondary),
    }
    proc = Twistd(deploy, tmp_path, env)
    try:
        proc.waitFor("core-channel-primary: connected")
        proc.waitFor("core-channel-secondary: connected")
        proc.waitFor("front: listening")
        load = tool(
            "load", "--endpoint", f"tcp:127.0.0.1:{frontPort}", "-n", "400", "-c", "8", "--json"
        )
        summary = json.loads(load.stdout)
        assert summary["split"] == {"core-a": 200, "core-b": 200}, load.stdout + load.stderr
        assert "unknown" not in proc.log  # every element and attribute understood
    finally:
        code = proc.stop()
    assert code == 0


def test_hot_deploy_under_load(tmp_path):
    """
    While `muxpool load` runs: add a third member's files, then remove the
    first member's.  No request fails.
    """
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    frontPort = freePort()
    (deploy / "40_core-mux.xml").write_text(
        pool("core-mux", ["core-mux-1", "core-mux-2", "core-mux-3"])
    )
    (deploy / "50_front.xml").write_text(front("front", frontPort, "core-mux"))
    first = member(deploy, 1)
    member(deploy, 2)
    proc = Twistd(deploy, tmp_path)
    try:
        proc.waitFor("channel-1: connected")
        proc.waitFor("channel-2: connected")
        proc.waitFor("front: listening")
        load = startTool(
            "load",
            "--endpoint",
            f"tcp:127.0.0.1:{frontPort}",
            "-n",
            "15000",
            "-c",
            "16",
            "-k",
            "2",
            "--json",
        )
        try:
            member(deploy, 3)
            proc.waitFor("channel-3: connected")
            for path in first:
                path.unlink()
            proc.waitFor("undeploying core-mux-1")
            assert load.poll() is None, "the load ended before the hot deploy"
            out, err = load.communicate(timeout=120)
        finally:
            if load.poll() is None:
                load.kill()
                load.communicate()
        assert load.returncode == 0, out + err
        summary = json.loads(out)
        assert summary["answered"] == {"00": 15000}, summary
        assert summary["not_sent"] == summary["outcome_unknown"] == summary["errors"] == 0
        assert summary["split"].get("issuer-3", 0) > 0, summary
    finally:
        code = proc.stop()
    assert code == 0, proc.log[-3000:]
    assert "Traceback" not in proc.log


def test_a_second_sigterm_while_stopping_changes_nothing(tmp_path):
    """
    A supervisor that sends SIGTERM again while the switch drains (here a
    request the issuer answers after 3 s) gets the same graceful stop: one
    line says so, the request is answered, no traceback, exit status 0.
    """
    import signal

    from tests.deployfiles import singleIssuerSwitch

    issuerDir, switchDir, frontPort = singleIssuerSwitch(tmp_path)
    slow = (issuerDir / "10_issuer.xml").read_text()
    (issuerDir / "10_issuer.xml").write_text(
        slow.replace('<property name="delay" value="0"/>', '<property name="delay" value="3000"/>')
    )
    adminPort = freePort()
    issuerProc = Twistd(issuerDir, tmp_path)
    switch = Twistd(switchDir, tmp_path, args=("--admin", f"tcp:{adminPort}:interface=127.0.0.1"))
    issuerProc.waitFor("listening")
    switch.waitFor("front: listening")
    switch.waitFor("channel-1: connected")
    switch.waitFor("admin API on")
    sending = startTool("send", "--endpoint", f"tcp:127.0.0.1:{frontPort}", "--timeout", "20")
    # Until the request is in flight (the issuer answers it 3 s later).
    deadline = time.monotonic() + 10
    while (
        tool("status", "--admin", f"http://127.0.0.1:{adminPort}", "--json").stdout.count(
            '"in_flight": 1'
        )
        < 2
    ):  # the front's session and the QMUX
        assert time.monotonic() < deadline, "the request never got in flight"
    switch.process.send_signal(signal.SIGTERM)
    switch.waitFor("SIGTERM: stopping gracefully")
    switch.process.send_signal(signal.SIGTERM)
    switch.waitFor("SIGTERM: already stopping gracefully")
    assert switch.stop(sig=None) == 0
    out, _ = sending.communicate(timeout=30)
    assert "39=00" in out, out
    log = "".join(switch.lines)
    assert "ReactorNotRunning" not in log and "Traceback" not in log, log[-3000:]
    assert log.count("SIGTERM: stopping gracefully") == 1
