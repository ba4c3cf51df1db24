"""
`twistd muxpool --workers 2`: two worker processes share the
front server's listening socket; one killed with SIGKILL, the other keeps
answering and a replacement starts; a server deployed later is served by
every worker; SIGTERM stops them all, exit 0.
"""

import json
import os
import re
import signal

from tests.deployfiles import freePort, front, singleIssuerSwitch
from tests.twistdproc import Twistd, tool


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


def test_workers_share_the_port_and_survive_one_dying(tmp_path):
    issuerDir, switchDir, frontPort = singleIssuerSwitch(tmp_path)
    adminPort = freePort()
    issuerProc = Twistd(
        issuerDir, tmp_path, args=["--admin", f"tcp:{adminPort}:interface=127.0.0.1"]
    )
    switch = Twistd(switchDir, tmp_path, args=["--workers", "2"])
    try:
        issuerProc.waitFor("admin API on")
        switch.waitFor("front: listening", count=2)
        switch.waitFor("channel-1: ready", count=2)
        pids = dict(
            (int(i), int(p))
            for i, p in re.findall(r"worker (\d) started \(pid (\d+)\)", switch.log)
        )
        assert sorted(pids) == [1, 2]
        # an issuer sees one connection per channel adaptor per worker
        status = json.loads(
            tool("status", "--admin", f"http://127.0.0.1:{adminPort}", "--json").stdout
        )
        assert [s["sessions"] for s in status["servers"]] == [2]

        def answered(n, port=frontPort):
            result = tool(
                "load",
                "--endpoint",
                f"tcp:127.0.0.1:{port}",
                "-n",
                str(n),
                "-c",
                "8",
                "-k",
                "4",
                "--json",
                "--quiet",
            )
            return json.loads(result.stdout)["answered"]

        assert answered(400) == {"00": 400}
        os.kill(pids[1], signal.SIGKILL)
        switch.waitFor("worker 1 ended")
        assert answered(400) == {"00": 400}  # the other worker answers meanwhile
        switch.waitFor("worker 1 started", count=2)
        switch.waitFor("channel-1: ready", count=3)
        assert answered(400) == {"00": 400}
        # A server deployed while they run: each worker listens on it too
        # (SO_REUSEPORT), none is blocked by a socket the parent holds.
        secondPort = freePort()
        (switchDir / "51_front-2.xml").write_text(front("front-2", secondPort, "core-mux"))
        switch.waitFor("front-2: listening", count=2)
        assert answered(400, secondPort) == {"00": 400}
        assert "front-2: cannot listen" not in switch.log
        workers = [int(p) for p in re.findall(r"worker \d started \(pid (\d+)\)", switch.log)]
    finally:
        code = switch.stop()
        issuerProc.stop()
    assert code == 0, switch.log[-3000:]
    assert not any(alive(pid) for pid in workers)
    assert "Traceback" not in switch.log


def test_workers_of_a_killed_parent_stop_gracefully(tmp_path):
    """
    SIGKILL on the parent (no chance to pass a stop on): each worker sees
    its stdin close, says so, drains and exits, leaving nothing listening.
    """
    issuerDir, switchDir, frontPort = singleIssuerSwitch(tmp_path)
    issuerProc = Twistd(issuerDir, tmp_path)
    switch = Twistd(switchDir, tmp_path, args=["--workers", "2"])
    try:
        issuerProc.waitFor("listening")
        switch.waitFor("front: listening", count=2)
        pids = [int(p) for p in re.findall(r"worker \d started \(pid (\d+)\)", switch.log)]
        switch.process.kill()
        switch.process.wait()
        switch.waitForOutputEnd()  # both workers have closed their stdout: ended
    finally:
        switch.stop()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        issuerProc.stop()
    assert switch.log.count(") is gone; stopping gracefully") == 2, switch.log[-3000:]
    assert switch.log.count("Main loop terminated") == 2  # a graceful stop, not a kill
    assert not any(alive(pid) for pid in pids)
    result = tool("send", "--endpoint", f"tcp:127.0.0.1:{frontPort}", "--timeout", "2")
    assert result.returncode == 2 and "refused" in result.stdout + result.stderr
