"""
What the end-to-end tests share: issuer simulators and a switch as real
`twistd -n muxpool` processes, load from acquirer connections, and the
accounting every scenario checks (each approval an issuer wrote reached its
client or is in exactly one warning line).
"""

import json
import re
import time
from collections import Counter

from twisted.internet import defer
from twisted.internet.task import deferLater
from zope.interface import implementer

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec, IChannelOwner
from muxpool.iso import sampleRequest
from muxpool.mux import MUXPool, strategyByName
from muxpool.testing import startLink
from tests.deployfiles import adaptor, freePort, front, issuer, pool, qmux
from tests.twistdproc import Twistd

ASCII = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
SIGN_OFF = '\n  <property name="sign-off-on-stop" value="true"/>'
UNDELIVERED = re.compile(r"answer not delivered .*: 0210 11=(\d+) 41=(\S+) ")


def reactor():
    from twisted.internet import reactor

    return reactor


def issuers(tmp_path, count=2, delay=5, extra=""):
    """
    Issuer simulators, each its own twistd process; they record (11, 41,
    39) of every answer they write.  C{extra} is added to each server.
    """
    made = []
    for i in range(1, count + 1):
        folder = tmp_path / f"issuer-{i}"
        folder.mkdir()
        port, record = freePort(), tmp_path / f"issuer-{i}.jsonl"
        (folder / "10_issuer.xml").write_text(
            issuer(f"issuer-{i}", port, f"issuer-{i}", delay=delay, record=record, extra=extra)
        )
        made.append((Twistd(folder, tmp_path), port, record))
    for proc, _, _ in made:
        proc.waitFor("listening")
    return made


def switch(
    tmp_path,
    issuerPorts,
    extra=SIGN_OFF,
    *,
    channel="",
    strategy="round-robin",
    poolExtra="",
    timeout=10000,
    args=(),
    name="switch",
    frontChannel="",
):
    """
    The switch under test: a channel, QMUX and pool member per issuer, and
    a front server forwarding to the pool.  C{channel} is added to each
    channel adaptor, C{poolExtra} to the pool, C{extra} to the front
    server and C{frontChannel} to its channel; C{args} to twistd's.
    """
    deploy = tmp_path / name
    deploy.mkdir()
    names = []
    for i, port in enumerate(issuerPorts, 1):
        (deploy / f"2{i}_channel-{i}.xml").write_text(
            adaptor(f"channel-{i}", port, f"q{i}", extra=channel)
        )
        (deploy / f"3{i}_core-mux-{i}.xml").write_text(qmux(f"core-mux-{i}", f"q{i}"))
        names.append(f"core-mux-{i}")
    (deploy / "40_pool.xml").write_text(pool("core-mux", names, strategy, extra=poolExtra))
    frontPort = freePort()
    (deploy / "50_front.xml").write_text(
        front("front", frontPort, "core-mux", timeout=timeout, extra=extra, channel=frontChannel)
    )
    proc = Twistd(deploy, tmp_path, args=args)
    proc.waitFor("front: listening")
    for i in range(1, len(issuerPorts) + 1):
        proc.waitFor(f"channel-{i}: connected")
    return proc, frontPort, deploy


@defer.inlineCallbacks
def underLoad(port, total, actions, connections=4, inFlight=16, until=None, start=0):
    """
    C{total} requests through C{connections} acquirer connections; each
    C{actions[i]} runs when request i has its outcome.  Once C{until()} is
    false no more are sent (the switch is gone).
    """
    links = [
        startLink(
            reactor(),
            port,
            name=f"acquirer-{i}",
            spec=ASCII,
            reconnectDelay=0.2,
            maxReconnectDelay=0.5,
        )
        for i in range(connections)
    ]
    acquirer = MUXPool(
        "acquirer", [mux for _, mux in links], reactor(), strategyByName("round-robin")
    )
    acquirer.startService()
    for adaptor_, _ in links:
        yield adaptor_.ready.whenState(True)

    def onEach(i, result):
        if i in actions:
            actions.pop(i)()

    try:
        outcomes = yield runLoad(
            acquirer, total, inFlight, timeout=3, onEach=onEach, keepGoing=until, start=start
        )
    finally:
        yield acquirer.stopService()
        for adaptor_, mux in links:
            yield mux.stopService()
            yield adaptor_.stopService()
    return outcomes


def key(message):
    return (message["11"].strip(), message["41"].strip())


def checkNothingApprovedWasLost(outcomes, records, log):
    """
    Every approval an issuer wrote reached its client, or is in exactly one
    warning line; no client got a decline for an approved request.
    """
    approved = set()
    for record in records:
        with open(record) as f:
            approved |= {key(line) for line in map(json.loads, f) if line["39"] == "00"}
    answered = {key(o): o["39"] for o in outcomes if isinstance(o, dict)}
    assert len(answered) == sum(isinstance(o, dict) for o in outcomes)  # keys are unique
    warned = Counter(UNDELIVERED.findall(log))
    assert all(count == 1 for count in warned.values()), warned
    lost = [k for k in approved if answered.get(k) != "00" and k not in warned]
    assert lost == [], f"approved but neither delivered nor logged: {lost[:5]}"
    declined = [k for k, code in answered.items() if code != "00" and k in approved]
    assert declined == [], f"declined to the client, approved by the issuer: {declined[:5]}"
    return approved, answered, warned


def stopIssuers(made):
    codes = [proc.stop() for proc, _, _ in made]
    assert codes == [0] * len(made), [proc.log[-2000:] for proc, _, _ in made]


@defer.inlineCallbacks
def until(condition, timeout=30.0, what="condition"):
    """
    Wait (letting the reactor run) until C{condition()} is true.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield deferLater(reactor(), 0.05)


@implementer(IChannelOwner)
class Stubborn:
    """
    An acquirer as jPOS's is to a stop: it ignores the 0800 sign-off and
    writes a request every few milliseconds until it sees the close.
    """

    def __init__(self, clock):
        self.clock = clock
        self.written, self.answers, self.signOffs = [], {}, 0
        self.closed = defer.Deferred()
        self.protocol = None

    def channelConnected(self, protocol):
        self.protocol = protocol
        self._next()

    def _next(self):
        if self.protocol is None or not self.protocol.connected or self.closed.called:
            return
        stan = "%06d" % (len(self.written) + 1)
        self.protocol.sendMessage(dict(sampleRequest(0), **{"11": stan}))
        self.written.append(stan)
        self.clock.callLater(0.002, self._next)

    def channelMessage(self, protocol, message):
        if message["t"] == "0800":
            self.signOffs += 1  # and no answer
        else:
            self.answers[message["11"]] = message["39"]

    def channelLost(self, protocol, reason):
        if not self.closed.called:
            self.closed.callback(None)

    def channelSecured(self, protocol):
        pass

    def channelIdle(self, protocol):
        return False

    def channelUndecodable(self, protocol, why):
        pass


#: Requests a stubborn client may write in the milliseconds between the
#: server's last read and the client's seeing the close: no one reads
#: them (TCP), so the server cannot count them, and they moved no money.
IN_FLIGHT_AT_CLOSE = 2


def checkStubbornAccounted(client, log):
    """
    Every request the L{Stubborn} client wrote was answered, or counted
    in the switch's one line as come after the close (but for those still
    on the wire when it closed); returns (unanswered, counted).
    """
    late = sum(int(x) for x in re.findall(r"(\d+) came after the close", log))
    unanswered = [stan for stan in client.written if stan not in client.answers]
    assert 0 <= len(unanswered) - late <= IN_FLIGHT_AT_CLOSE, (len(unanswered), late)
    return len(unanswered), late
