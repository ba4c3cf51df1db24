"""
Issue 11: `twistd muxpool --workers 2`: two worker processes share the
front server's listening socket; one killed with SIGKILL, the other keeps
answering and a replacement starts; a server deployed later is served by
every worker; SIGTERM stops them all, exit 0.
"""

import json
import os
import re
import signal

from tests.deployfiles import adaptor, freePort, front, issuer, qmux
from tests.twistdproc import Twistd, tool


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


def test_workers_share_the_port_and_survive_one_dying(tmp_path):
    issuerDir, switchDir = tmp_path / "issuer", tmp_path / "switch"
    issuerDir.mkdir()
    switchDir.mkdir()
    issuerPort, frontPort = freePort(), freePort()
    (issuerDir / "10_issuer.xml").write_text(issuer("issuer-1", issuerPort, "issuer-1"))
    (switchDir / "20_channel.xml").write_text(adaptor("channel-1", issuerPort, "q1"))
    (switchDir / "30_mux.xml").write_text(qmux("core-mux", "q1"))
    (switchDir / "50_front.xml").write_text(front("front", frontPort, "core-mux"))
    adminPort = freePort()
    issuerProc = Twistd(issuerDir, tmp_path, args=["--admin", f"tcp:{adminPort}:interface=127.0.0.1"])
    switch = Twistd(switchDir, tmp_path, args=["--workers", "2"])
    try:
        issuerProc.waitFor("admin API on")
        switch.waitFor("front: listening", count=2)
        switch.waitFor("channel-1: ready", count=2)
        pids = dict((int(i), int(p)) for i, p in re.findall(r"worker (\d) started \(pid (\d+)\)", switch.log))
        assert sorted(pids) == [1, 2]
        # an issuer sees one connection per channel adaptor per worker
        status = json.loads(tool("status", "--admin", f"http://127.0.0.1:{adminPort}", "--json").stdout)
        assert [s["sessions"] for s in status["servers"]] == [2]

        def answered(n, port=frontPort):
            result = tool("load", "--endpoint", f"tcp:127.0.0.1:{port}", "-n", str(n), "-c", "8",
                          "-k", "4", "--json", "--quiet")
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
