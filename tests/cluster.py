"""
More than one switch node behind Debian's real HAProxy running the recipe
in deploy/haproxy/haproxy.cfg: nodes as `twistd -n muxpool` processes with
their agent, admin API and a drain delay, and HAProxy's view of them.
"""

import os
import shutil
import signal
import socket
import subprocess

import pytest
from twisted.internet import defer
from twisted.internet.task import deferLater

from tests.conftest import ROOT
from tests.deployfiles import adaptor, freePort, front, pool, qmux
from tests.e2e import SIGN_OFF, reactor, until
from tests.twistdproc import Twistd

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
)
#: Marks a test that needs haproxy (skipped, saying so, without it).
needsHAProxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (.ci/run installs Debian's)"
)
RECIPE = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
PROXIED = (
    '\n  <property name="proxy-protocol" value="v2"/>'
    '\n  <property name="proxy-from" value="127.0.0.1"/>'
)


class Node:
    """
    One switch node: a front server (PROXY v2 from HAProxy) forwarding to
    a pool over both issuers, with its agent, admin API and a drain delay.
    """

    def __init__(self, tmp_path, name, issuerPorts):
        self.name = name
        self.deploy = tmp_path / name
        self.deploy.mkdir()
        names = []
        for i, port in enumerate(issuerPorts, 1):
            (self.deploy / f"2{i}_channel-{i}.xml").write_text(
                adaptor(f"channel-{i}", port, f"q{i}")
            )
            (self.deploy / f"3{i}_core-mux-{i}.xml").write_text(qmux(f"core-mux-{i}", f"q{i}"))
            names.append(f"core-mux-{i}")
        (self.deploy / "40_pool.xml").write_text(pool("core-mux", names))
        self.port, self.agent, self.admin = freePort(), freePort(), freePort()
        (self.deploy / "50_front.xml").write_text(
            front("front", self.port, "core-mux", extra=SIGN_OFF + PROXIED)
        )
        self.cwd = tmp_path
        self.proc = None
        self.runs = []

    def start(self):
        self.proc = Twistd(
            self.deploy,
            self.cwd,
            args=(
                "--agent",
                f"tcp:{self.agent}:interface=127.0.0.1",
                "--admin",
                f"tcp:{self.admin}:interface=127.0.0.1",
                "--drain-delay",
                "2",
            ),
        )
        self.runs.append(self.proc)

    def agentSays(self):
        with socket.create_connection(("127.0.0.1", self.agent), timeout=5) as s:
            return s.makefile("rb").readline().decode().strip()


class HAProxy:
    def __init__(self, tmp_path, nodes):
        self.port = freePort()
        self.socket = str(tmp_path / "haproxy.sock")
        env = dict(
            os.environ,
            MUXPOOL_LISTEN=f"127.0.0.1:{self.port}",
            HAPROXY_STATS_SOCKET=self.socket,
            HAPROXY_CHECK_INTER="200ms",
        )
        for i, node in enumerate(nodes, 1):
            env[f"MUXPOOL_NODE{i}"] = f"127.0.0.1:{node.port}"
            env[f"MUXPOOL_AGENT{i}"] = str(node.agent)
        self.log = open(tmp_path / "haproxy.log", "w+")
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(RECIPE)], env=env, stdout=self.log, stderr=self.log
        )

    def servers(self):
        """
        Each server's (status, weight), as HAProxy's stats socket says.
        """
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.socket)
                s.sendall(b"show stat\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return {}
        lines = data.decode().splitlines()
        fields = lines[0].lstrip("# ").split(",")
        found = {}
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("pxname") == "switch-nodes" and row.get("svname", "").startswith("node"):
                found[row["svname"]] = (row["status"], row["weight"])
        return found

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.seek(0)
        return self.log.read()


@defer.inlineCallbacks
def cluster(tmp_path, nodes, made):
    """
    Start C{nodes}, then HAProxy in front of them; fires with HAProxy once
    it sees both UP.  (Whatever started is stopped by the caller.)
    """
    for node in nodes:
        node.start()
    for node in nodes:
        node.proc.waitFor("front: listening")
    haproxy = HAProxy(tmp_path, nodes)
    made.append(haproxy)
    yield until(lambda: {s for s, _ in haproxy.servers().values()} == {"UP"}, what="both UP")
    return haproxy


def adminGet(node, path):
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin}{path}", timeout=5) as answer:
        return json.loads(answer.read())


def adminPost(node, path):
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{node.admin}{path}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status


@defer.inlineCallbacks
def rollEach(haproxy, nodes, states):
    """
    Roll each node in turn as an operator would: SIGTERM (its agent says
    drain at once, and HAProxy shows DRAIN), exit 0, start again, UP in
    HAProxy; a second of traffic on the others before the next.  Each
    state seen is appended to C{states}.
    """
    for i, node in enumerate(nodes, 1):
        old = node.proc
        old.process.send_signal(signal.SIGTERM)
        yield until(
            lambda i=i: haproxy.servers().get(f"node{i}", ("", ""))[0].startswith("DRAIN"),
            what=f"node{i} DRAIN in HAProxy",
        )
        states.append((f"node{i}", "DRAIN"))
        yield until(lambda old=old: old.process.poll() is not None, what="exit")
        assert old.stop(sig=None) == 0, old.log[-3000:]
        node.start()
        yield until(
            lambda i=i: haproxy.servers().get(f"node{i}", ("", ""))[0] == "UP",
            what=f"node{i} UP again",
        )
        states.append((f"node{i}", "UP"))
        assert node.agentSays().startswith("ready up maxconn:")
        yield deferLater(reactor(), 1.0)  # traffic on the other before the next
