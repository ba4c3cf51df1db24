"""
The admin API end to end: a real `twistd -n muxpool --admin ...` switch, watched
and steered through its admin API as an operator would (HTTP and the
`muxpool` verbs), down to a rolling update of every backend under load.
"""

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, threads

from tests.deployfiles import adaptor, freePort, front, issuer, qmux
from tests.e2e import underLoad
from tests.twistdproc import Twistd, tool


def get(port, path, token=None, method="GET", headers=()):
    """
    (status, body) of one admin request.
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers:
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status(port, token=None):
    code, body = get(port, "/status", token)
    assert code == 200, body
    return json.loads(body)


def member(state, pool, name):
    for p in state["pools"]:
        if p["name"] == pool:
            for m in p["members"]:
                if m["name"] == name:
                    return m
    raise AssertionError(f"{pool}/{name} not in status")


def startIssuer(tmp_path, i, port, record=None):
    folder = tmp_path / f"issuer-{i}"
    folder.mkdir(exist_ok=True)
    (folder / "10_issuer.xml").write_text(
        issuer(
            f"issuer-{i}",
            port,
            f"issuer-{i}",
            record=record,
            extra='\n  <property name="sign-off-on-stop" value="true"/>',
        )
    )
    proc = Twistd(folder, tmp_path)
    proc.waitFor("listening")
    return proc


def switchFolder(tmp_path, ports, poolExtra="", forwardTimeout=10000):
    deploy = tmp_path / "switch"
    deploy.mkdir()
    names = []
    for i, port in enumerate(ports, 1):
        (deploy / f"2{i}_channel-{i}.xml").write_text(
            adaptor(
                f"channel-{i}", port, f"q{i}", "\n  <max-reconnect-delay>300</max-reconnect-delay>"
            )
        )
        (deploy / f"3{i}_core-mux-{i}.xml").write_text(qmux(f"core-mux-{i}", f"q{i}"))
        names.append(f"core-mux-{i}")
    (deploy / "40_pool.xml").write_text(
        f"<mux class='org.jpos.q2.iso.MUXPool' name='core-mux'><muxes>{' '.join(names)}</muxes>"
        f"<strategy>round-robin</strategy>{poolExtra}</mux>"
    )
    frontPort = freePort()
    (deploy / "50_front.xml").write_text(
        front(
            "front",
            frontPort,
            "core-mux",
            timeout=forwardTimeout,
            extra='\n  <property name="sign-off-on-stop" value="true"/>',
        )
    )
    return deploy, frontPort


def load(frontPort, n=200):
    result = tool(
        "load",
        "--endpoint",
        f"tcp:127.0.0.1:{frontPort}",
        "-n",
        str(n),
        "-c",
        "8",
        "--quiet",
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_status_metrics_and_enable_disable(tmp_path):
    ports = [freePort(), freePort()]
    issuers = [startIssuer(tmp_path, i, port) for i, port in enumerate(ports, 1)]
    deploy, frontPort = switchFolder(tmp_path, ports)
    adminPort = freePort()
    switch = Twistd(deploy, tmp_path, args=["--admin", f"tcp:{adminPort}:interface=127.0.0.1"])
    admin = f"http://127.0.0.1:{adminPort}"
    try:
        switch.waitFor("admin API on 127.0.0.1")
        switch.waitFor("channel-2: ready")
        assert load(frontPort, 200)["split"] == {"issuer-1": 100, "issuer-2": 100}

        # metrics parse as Prometheus text, and count what was sent
        code, text = get(adminPort, "/metrics")
        assert code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples
        }
        assert (
            samples[
                ("muxpool_pool_requests_total", (("member", "core-mux-1"), ("pool", "core-mux")))
            ]
            == 100
        )
        assert samples[("muxpool_mux_responses_total", (("mux", "core-mux-2"),))] == 100
        assert samples[("muxpool_server_rx_total", (("server", "front"),))] == 200
        assert (
            samples[("muxpool_mux_request_duration_seconds_count", (("mux", "core-mux-1"),))] == 100
        )
        assert samples[("muxpool_channel_ready", (("channel", "channel-1"),))] == 1

        # a backend going down and up shows in /status
        issuers[0].stop()
        switch.waitFor("channel-1: not ready")
        assert member(status(adminPort), "core-mux", "core-mux-1")["state"] == "down"
        channel = [c for c in status(adminPort)["channels"] if c["name"] == "channel-1"][0]
        assert not channel["ready"] and channel["counters"]["connects"] == 1
        issuers[0] = startIssuer(tmp_path, 1, ports[0])
        switch.waitFor("channel-1: ready", count=2)
        assert member(status(adminPort), "core-mux", "core-mux-1")["state"] == "up"

        # disable changes the split; enable restores it (the muxpool verbs)
        done = tool("disable", "core-mux-1", "--admin", admin)
        assert done.returncode == 0 and "core-mux-1: disabled in core-mux" in done.stdout
        assert load(frontPort, 100)["split"] == {"issuer-2": 100}
        shown = tool("status", "--admin", admin)
        assert "core-mux-1" in shown.stdout and "disabled" in shown.stdout
        assert tool("enable", "core-mux-1", "--admin", admin).returncode == 0
        assert load(frontPort, 100)["split"] == {"issuer-1": 50, "issuer-2": 50}

        # bad paths and methods get HTTP errors; no card data in answers
        assert get(adminPort, "/nope")[0] == 404
        assert get(adminPort, "/status", method="POST")[0] == 405
        assert get(adminPort, "/muxes/core-mux-1/enable")[0] == 405
        assert get(adminPort, "/muxes/ghost/enable", method="POST")[0] == 404
        assert get(adminPort, "/muxes/core-mux-1/frobnicate", method="POST")[0] == 404
        # a web page open on this host cannot post (no token needed on loopback)
        assert (
            get(
                adminPort,
                "/muxes/core-mux-1/disable",
                method="POST",
                headers=[("Origin", "http://elsewhere.example")],
            )[0]
            == 403
        )
        assert member(status(adminPort), "core-mux", "core-mux-1")["state"] == "up"
        assert b"4761739001010119" not in get(adminPort, "/status")[1] + text
    finally:
        assert switch.stop() == 0, switch.log[-3000:]
        for proc in issuers:
            proc.stop()
    assert "Traceback" not in switch.log
    assert "mux.disabled" not in switch.log  # events carry names as fields, not in the text


def test_a_check_enabled_pool_sends_once_its_members_are_enabled(tmp_path):
    ports = [freePort(), freePort()]
    issuers = [startIssuer(tmp_path, i, port) for i, port in enumerate(ports, 1)]
    deploy, frontPort = switchFolder(
        tmp_path, ports, '<property name="check-enabled" value="true"/>', 1000
    )
    adminPort = freePort()
    switch = Twistd(deploy, tmp_path, args=["--admin", f"tcp:{adminPort}:interface=127.0.0.1"])
    try:
        switch.waitFor("channel-2: ready")
        switch.waitFor("admin API on")
        refused = tool("send", "--endpoint", f"tcp:127.0.0.1:{frontPort}", "--timeout", "5")
        assert "39=91" in refused.stdout  # no member enabled: not sent to any issuer
        assert member(status(adminPort), "core-mux", "core-mux-2")["state"] == "disabled"
        assert (
            tool("enable", "core-mux-2", "--admin", f"http://127.0.0.1:{adminPort}").returncode == 0
        )
        assert load(frontPort, 50)["split"] == {"issuer-2": 50}
    finally:
        assert switch.stop() == 0
        for proc in issuers:
            proc.stop()


def test_a_token_is_required_when_set(tmp_path):
    (tmp_path / "deploy").mkdir()
    tokenFile = tmp_path / "token"
    tokenFile.write_text("s3cret-token\n")
    adminPort = freePort()
    switch = Twistd(
        tmp_path / "deploy",
        tmp_path,
        args=[
            "--admin",
            f"tcp:{adminPort}:interface=127.0.0.1",
            "--admin-token-file",
            str(tokenFile),
        ],
    )
    try:
        switch.waitFor("admin API on")
        code, body = get(adminPort, "/status")
        assert code == 401 and b"Bearer" in body
        assert get(adminPort, "/status", token="wrong")[0] == 401
        assert get(adminPort, "/metrics", token="s3cret-token")[0] == 200
        assert get(adminPort, "/muxes/x/disable", method="POST")[0] == 401
        # the page holds no data and a browser cannot send a token with it;
        # its script sends the token (from /#token=...) with each /status
        code, page = get(adminPort, "/")
        assert code == 200 and b"<html" in page.lower()
        assert get(adminPort, "/nothing-here")[0] == 401
        assert status(adminPort, "s3cret-token")["pools"] == []
        denied = tool("status", "--admin", f"http://127.0.0.1:{adminPort}")
        assert denied.returncode == 1 and "401" in denied.stderr
        allowed = tool(
            "status", "--admin", f"http://127.0.0.1:{adminPort}", "--token-file", str(tokenFile)
        )
        assert allowed.returncode == 0, allowed.stderr
    finally:
        assert switch.stop() == 0


def test_without_a_token_only_loopback(tmp_path):
    (tmp_path / "deploy").mkdir()
    proc = Twistd(tmp_path / "deploy", tmp_path, args=["--admin", f"tcp:{freePort()}"])
    proc.stop(sig=None)  # it ends by itself, refusing (Twisted 26.4 exits 0 on a usage error)
    assert "listens on every interface" in proc.log and "admin API on" not in proc.log


@pytest_twisted.inlineCallbacks
def test_rolling_update_of_every_backend_under_load(tmp_path):
    """
    A pool of three backends under steady load from several connections:
    for each in turn, drain it, stop it, start it again, enable it.  Every
    request is answered 00 and the backends' own counts agree.
    """
    ports = [freePort() for _ in range(3)]
    records = [tmp_path / f"issuer-{i}.jsonl" for i in range(1, 4)]
    issuers = [startIssuer(tmp_path, i, port, records[i - 1]) for i, port in enumerate(ports, 1)]
    deploy, frontPort = switchFolder(tmp_path, ports)
    adminPort = freePort()
    admin = f"http://127.0.0.1:{adminPort}"
    switch = Twistd(deploy, tmp_path, args=["--admin", f"tcp:{adminPort}:interface=127.0.0.1"])
    switch.waitFor("admin API on")
    for i in range(1, 4):
        switch.waitFor(f"channel-{i}: ready")
    updated = []

    def update(i):
        """
        One backend's update, in a thread (it blocks on processes and HTTP).
        """
        drained = tool("drain", f"core-mux-{i}", "--admin", admin, "--timeout", "10")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        assert issuers[i - 1].stop() == 0
        issuers[i - 1] = startIssuer(tmp_path, i, ports[i - 1], records[i - 1])
        switch.waitFor(f"channel-{i}: ready", count=2)
        enabled = tool("enable", f"core-mux-{i}", "--admin", admin)
        assert enabled.returncode == 0
        updated.append(i)

    rolling = []

    def startRolling():
        d = defer.succeed(None)
        for i in (1, 2, 3):
            d.addCallback(lambda _, i=i: threads.deferToThread(update, i))
        rolling.append(d)

    try:
        outcomes = yield underLoad(
            frontPort, 100000, {500: startRolling}, inFlight=8, until=lambda: len(updated) < 3
        )
        yield rolling[0]
    finally:
        code = switch.stop()
        for proc in issuers:
            proc.stop()
    sent = [o for o in outcomes if o is not None]
    assert updated == [1, 2, 3] and len(sent) > 1000
    assert all(isinstance(o, dict) and o["39"] == "00" for o in sent), Counter(
        type(o.value).__name__ if not isinstance(o, dict) else o["39"] for o in sent
    )
    byIssuer = Counter(o["44"] for o in sent)
    for i, record in enumerate(records, 1):
        with open(record) as f:
            answered = sum(1 for line in f if json.loads(line)["39"] == "00")
        assert answered == byIssuer[f"issuer-{i}"], (i, answered, byIssuer)
    assert code == 0 and "Traceback" not in switch.log
