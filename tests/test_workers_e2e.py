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


def test_one_admin_endpoint_and_agent_for_every_worker(tmp_path):
    """
    With --workers 2 --admin --agent, the parent serves the node's one
    admin API and agent: /metrics is the sum of both workers', /status
    labels each entry with its worker, a drain there drains the MUX in
    both workers, /ready and the agent speak for the whole node.
    """
    import socket
    import urllib.error
    import urllib.request

    from tests.deployfiles import adaptor, issuer, pool, qmux

    issuerDir, switchDir = tmp_path / "issuer", tmp_path / "switch"
    issuerDir.mkdir()
    switchDir.mkdir()
    issuerPort, frontPort, adminPort, agentPort = freePort(), freePort(), freePort(), freePort()
    (issuerDir / "10_issuer.xml").write_text(issuer("issuer-1", issuerPort, "issuer-1"))
    (switchDir / "20_channel.xml").write_text(adaptor("channel-1", issuerPort, "q1"))
    (switchDir / "30_mux.xml").write_text(qmux("core-mux-1", "q1"))
    (switchDir / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    (switchDir / "50_front.xml").write_text(front("front", frontPort, "core-mux"))
    admin = f"http://127.0.0.1:{adminPort}"

    def call(path, method="GET"):
        request = urllib.request.Request(admin + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def agent():
        with socket.create_connection(("127.0.0.1", agentPort), timeout=10) as s:
            return s.makefile("rb").readline().decode().strip()

    issuerProc = Twistd(issuerDir, tmp_path)
    switch = Twistd(
        switchDir,
        tmp_path,
        args=[
            "--workers",
            "2",
            "--admin",
            f"tcp:{adminPort}:interface=127.0.0.1",
            "--agent",
            f"tcp:{agentPort}:interface=127.0.0.1",
        ],
    )
    try:
        issuerProc.waitFor("issuer-1: listening")
        switch.waitFor("channel-1: ready", count=2)
        switch.waitFor("admin API on")
        load = tool(
            "load",
            "--endpoint",
            f"tcp:127.0.0.1:{frontPort}",
            "-n",
            "200",
            "-k",
            "4",
            "--json",
            "--quiet",
        )
        assert json.loads(load.stdout)["answered"] == {"00": 200}, load.stdout
        code, metrics = call("/metrics")
        line = 'muxpool_pool_requests_total{member="core-mux-1",pool="core-mux"} 200.0'
        assert code == 200 and line in metrics.decode(), metrics.decode()
        status = json.loads(call("/status")[1])
        perWorker = {p["worker"]: p["members"][0]["requests"] for p in status["pools"]}
        assert sorted(perWorker) == [1, 2] and sum(perWorker.values()) == 200, perWorker
        assert call("/ready")[0] == 200 and agent().startswith("ready up maxconn:")

        code, body = call("/muxes/core-mux-1/drain?timeout=5", "POST")
        assert code == 200 and [w["code"] for w in json.loads(body)["workers"]] == [200, 200]
        status = json.loads(call("/status")[1])
        assert [p["members"][0]["state"] for p in status["pools"]] == ["disabled"] * 2  # drained
        code, body = call("/ready")
        assert code == 503 and b"worker 1" in body and agent() == "down"
        assert call("/muxes/core-mux-1/enable", "POST")[0] == 200
        assert call("/ready")[0] == 200

        assert call("/drain", "POST")[0] == 200 and agent() == "drain"
        assert call("/ready")[0] == 503
        assert call("/undrain", "POST")[0] == 200 and agent().startswith("ready up")
    finally:
        code = switch.stop()
        issuerProc.stop()
    assert code == 0, switch.log[-3000:]
