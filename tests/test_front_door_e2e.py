"""
The front door end to end: a real `twistd -n muxpool` switch in front of issuer
simulators that record every request they answer, under steady load from
several connections.  Whatever stops or changes, each request an issuer
approved reaches its client or is named in exactly one warning line (to
reverse it by), no client sees a decline for an approved request, and the
switch exits 0.
"""

import os
import shutil
import signal
from collections import Counter

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from muxpool.channel import ISOChannelProtocol
from tests.conftest import ROOT
from tests.deployfiles import freePort, front
from tests.e2e import (
    ASCII,
    SIGN_OFF,
    Stubborn,
    checkNothingApprovedWasLost,
    checkStubbornAccounted,
    issuers,
    reactor,
    stopIssuers,
    switch,
    underLoad,
)
from tests.twistdproc import Twistd


@pytest.mark.parametrize(
    "sig,said",
    [
        (signal.SIGTERM, "SIGTERM: stopping gracefully"),
        (signal.SIGHUP, "SIGHUP: stopping gracefully"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_a_signal_under_load_stops_gracefully_and_loses_no_approval(tmp_path, sig, said):
    """
    SIGTERM, and SIGHUP under `twistd -n`, stop the switch gracefully: it
    says so in the log, drains, loses no approval and exits 0 (not at once,
    not with exit 129).
    """
    made = issuers(tmp_path)
    proc, port, _ = switch(tmp_path, [p for _, p, _ in made])
    try:
        outcomes = yield underLoad(
            port,
            3000,
            {800: lambda: os.kill(proc.process.pid, sig)},
            until=lambda: proc.process.poll() is None,
        )
        code = proc.stop(sig=None)
    finally:
        proc.stop()
        stopIssuers(made)
    approved, answered, warned = checkNothingApprovedWasLost(
        outcomes, [r for _, _, r in made], proc.log
    )
    assert code == 0, proc.log[-3000:]
    assert len(approved) >= 800 and said in proc.log and "Traceback" not in proc.log
    assert "front: stopping; draining" in proc.log


@pytest.mark.parametrize("signOff", [SIGN_OFF, ""], ids=["sign-off", "no-sign-off"])
@pytest_twisted.inlineCallbacks
def test_rewriting_the_front_server_file_under_load(tmp_path, signOff):
    """
    Redeploying the front server (changing maxSessions) loses no approval.
    The new server takes over the listening socket; the old one signs off
    (if configured) and drains.  Without a sign-off the clients learn of
    the stop by the close alone: they keep writing to the old server, which
    forwards in the first half of its grace period and declines 91 (not
    sent) after, and every answer reaches the client before the close.
    """
    made = issuers(tmp_path)
    proc, port, deploy = switch(tmp_path, [p for _, p, _ in made], extra=signOff)

    def redeploy():
        (deploy / "50_front.xml").write_text(
            front(
                "front",
                port,
                "core-mux",
                extra=signOff + '\n  <attr name="maxSessions" type="java.lang.Integer">50</attr>',
            )
        )

    try:
        outcomes = yield underLoad(port, 4000, {800: redeploy})
        proc.waitFor("took over the listening port")
    finally:
        code = proc.stop()
        stopIssuers(made)
    approved, answered, warned = checkNothingApprovedWasLost(
        outcomes, [r for _, _, r in made], proc.log
    )
    assert code == 0, proc.log[-3000:]
    failures = [o for o in outcomes if not isinstance(o, dict)]
    if signOff:
        assert failures == [], failures[:3]
        assert set(answered.values()) == {"00"}
    else:  # declined only as not sent: no issuer saw those
        assert set(answered.values()) <= {"00", "91"}
    assert warned == Counter(), "a client of the old server missed an answer"
    assert "front: stopping; draining 4 sessions" in proc.log and "Traceback" not in proc.log


@pytest_twisted.inlineCallbacks
def test_readme_hot_deploy_example_removes_and_restores_an_issuer(tmp_path):
    """
    README's own example (remove an issuer file under load, put it back)
    answers every request 39=00: not one 68 or 91.
    """
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "examples" / "demo" / "deploy", deploy)
    records = []
    for name in ("10_issuer-a.xml", "11_issuer-b.xml"):
        record = tmp_path / f"{name}.jsonl"
        text = (
            (deploy / name)
            .read_text()
            .replace(
                '<property name="result-code" value="00" />',
                f'<property name="result-code" value="00" />\n    <property name="record" value="{record}"/>',
            )
        )
        (deploy / name).write_text(text)
        records.append(record)
    ports = {
        "DEMO_PORT": str(freePort()),
        "ISSUER_A_PORT": str(freePort()),
        "ISSUER_B_PORT": str(freePort()),
    }
    proc = Twistd(deploy, tmp_path, ports)
    issuerB = deploy / "11_issuer-b.xml"
    saved = issuerB.read_text()
    try:
        proc.waitFor("core-mux-secondary-channel: connected")
        proc.waitFor("switch: listening")
        removing = yield underLoad(int(ports["DEMO_PORT"]), 3000, {1000: issuerB.unlink})
        proc.waitFor("issuer-b: stopping; draining")
        proc.waitFor("core-mux-secondary-channel: disconnected")
        removed = yield underLoad(int(ports["DEMO_PORT"]), 1000, {}, start=5000)
        issuerB.write_text(saved)
        proc.waitFor("core-mux-secondary-channel: connected", count=2)
        restored = yield underLoad(int(ports["DEMO_PORT"]), 2000, {}, start=10000)
    finally:
        code = proc.stop()
    outcomes = removing + removed + restored
    approved, answered, warned = checkNothingApprovedWasLost(outcomes, records, proc.log)
    assert code == 0, proc.log[-3000:]
    assert [o for o in outcomes if not isinstance(o, dict)] == []
    assert set(answered.values()) == {"00"}  # not one 68, nor 91
    assert Counter(o["44"] for o in removed) == {"issuer-a": 1000}  # it was gone
    assert Counter(o["44"] for o in restored) == {"issuer-a": 1000, "issuer-b": 1000}
    assert "issuer-b: stopping; draining" in proc.log and "Traceback" not in proc.log


@pytest_twisted.inlineCallbacks
def test_a_client_that_ignores_the_sign_off_loses_nothing_on_a_stop(tmp_path):
    """
    A jPOS-like client keeps writing through a stop: every request it wrote
    is answered (00 while the switch forwards, then 91 at once) or counted
    in the switch's one line as come after the close; none is silently
    dropped, and the sign-off it ignored is logged.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory

    made = issuers(tmp_path, delay=0)
    grace = '\n  <property name="grace-period" value="2000"/>'
    proc, port, _ = switch(tmp_path, [p for _, p, _ in made], extra=SIGN_OFF + grace)
    client = Stubborn(reactor())
    try:
        endpoint = TCP4ClientEndpoint(reactor(), "127.0.0.1", port)
        yield endpoint.connect(
            Factory.forProtocol(lambda: ISOChannelProtocol(ASCII, client, reactor()))
        )
        while len(client.answers) < 100:
            yield deferLater(reactor(), 0.01)
        os.kill(proc.process.pid, signal.SIGTERM)
        yield client.closed
        code = proc.stop(sig=None)
    finally:
        if client.protocol is not None:
            client.protocol.transport.abortConnection()
        proc.stop()
        stopIssuers(made)
    assert code == 0, proc.log[-3000:]
    unanswered, late = checkStubbornAccounted(client, proc.log)
    codes = Counter(client.answers.values())
    assert set(codes) <= {"00", "91"} and codes["00"] >= 100, codes
    assert client.signOffs == 1 and "did not answer the sign-off" in proc.log
    print(f"written {len(client.written)}, answered {dict(codes)}, after the close {late}")
