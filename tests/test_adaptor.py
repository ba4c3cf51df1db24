"""
ChannelAdaptor with a fake clock and in-memory connections: ready state,
sign-on, echo, keep-alive, reconnect.
"""

import dataclasses

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from zope.interface.verify import verifyObject

from muxpool.channel import ChannelSpec, IChannelOwner
from muxpool.interfaces import ILink, IReconnect, ISource
from muxpool.link import AdaptorSettings, ChannelAdaptor
from muxpool.mux import QMUX
from muxpool.testing import runUntil
from tests.helpers import connectedProtocol
from tests.logcapture import capturedText

SPEC = ChannelSpec.fromConfig("NACChannel", "ISO87A")


class Endpoint:
    """
    Connects to in-memory transports; can be told to refuse.
    """

    def __init__(self):
        self.protocols = []
        self.refuse = False

    def connect(self, factory):
        if self.refuse:
            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.protocols.append(protocol)
        return succeed(protocol)


def peerMessages(protocol):
    """
    What the adaptor wrote, decoded by a peer.
    """
    peer, _, owner = connectedProtocol(SPEC)
    peer.dataReceived(protocol.transport.value())
    protocol.transport.clear()
    return owner.messages


def reply(protocol, request, rc="00"):
    response = {"t": "0810", "11": request["11"], "39": rc, "70": request["70"]}
    protocol.dataReceived(SPEC.encode(response))


def makeAdaptor(spec=SPEC, **kwargs):
    clock = Clock()
    endpoint = Endpoint()
    kwargs.setdefault("reconnectDelay", 1.0)
    kwargs.setdefault("maxReconnectDelay", 4.0)
    adaptor = ChannelAdaptor(
        "link", spec, endpoint, clock, AdaptorSettings(**kwargs), jitter=lambda: 0.5
    )
    adaptor.startService()
    return adaptor, endpoint, clock


def test_interfaces():
    adaptor, _, _ = makeAdaptor()
    assert verifyObject(ILink, adaptor)
    assert verifyObject(ISource, adaptor)
    assert verifyObject(IChannelOwner, adaptor)
    assert verifyObject(IReconnect, adaptor)


def test_ready_while_connected_and_reconnects_with_backoff():
    adaptor, endpoint, clock = makeAdaptor()
    assert adaptor.ready
    endpoint.refuse = True
    endpoint.protocols[0].connectionLost(None)
    assert not adaptor.ready
    attempts = []
    endpoint.connect = lambda factory, connect=endpoint.connect: (
        attempts.append(clock.seconds()),
        connect(factory),
    )[1]
    runUntil(clock, 15)
    # at the base delay while the failures are few (an issuer restarting),
    # then growing by half per failure up to the cap
    assert attempts == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5, 10.75, 14.125]
    endpoint.refuse = False
    clock.advance(4.0)
    assert adaptor.ready and len(endpoint.protocols) == 2


def test_first_reconnect_comes_at_reconnect_delay():
    """
    The first reconnect comes at reconnect-delay (10 s), not later.
    """
    adaptor, endpoint, clock = makeAdaptor(reconnectDelay=10.0, maxReconnectDelay=40.0)
    endpoint.protocols[0].connectionLost(None)
    clock.advance(9.99)
    assert len(endpoint.protocols) == 1
    clock.advance(0.01)
    assert len(endpoint.protocols) == 2 and adaptor.ready


def test_jitter_stays_within_ten_percent():
    for j, expected in ((0.0, 9.0), (0.999999, 11.0)):
        adaptor = ChannelAdaptor(
            "link",
            SPEC,
            Endpoint(),
            Clock(),
            AdaptorSettings(reconnectDelay=10.0),
            jitter=lambda j=j: j,
        )
        assert abs(adaptor._retryDelay(1) - expected) < 1e-4


def test_connect_failures_are_logged_once_per_reason():
    from tests.logcapture import capturedText

    with capturedText() as lines:
        adaptor, endpoint, clock = makeAdaptor()
        endpoint.refuse = True
        endpoint.protocols[0].connectionLost(None)
        runUntil(clock, 20)
        endpoint.refuse = False
        clock.advance(4)
    warnings = [line.split("\n")[0] for line in lines if "cannot connect" in line]
    assert len(warnings) == 1, warnings
    assert "Connection was refused" in warnings[0] and "retrying" in warnings[0]
    assert adaptor.ready and adaptor.lastFailure is None
    assert adaptor.counters["connect_failures"] == 11  # every try, each logged or not


def test_sign_on_gates_ready():
    adaptor, endpoint, clock = makeAdaptor(signOn=True, echoTimeout=5)
    protocol = endpoint.protocols[0]
    assert not adaptor.ready
    [signOn] = peerMessages(protocol)
    assert signOn["t"] == "0800" and signOn["70"] == "001"
    reply(protocol, signOn)
    assert adaptor.ready


def test_sign_on_refused_drops_link():
    adaptor, endpoint, clock = makeAdaptor(signOn=True)
    protocol = endpoint.protocols[0]
    [signOn] = peerMessages(protocol)
    reply(protocol, signOn, rc="91")
    assert not adaptor.ready
    assert adaptor.counters["sign_on_failures"] == 1


def test_unanswered_echo_marks_not_ready():
    adaptor, endpoint, clock = makeAdaptor(echoInterval=30, echoTimeout=10)
    protocol = endpoint.protocols[0]
    clock.advance(29)
    assert peerMessages(protocol) == []
    clock.advance(1)
    [echo] = peerMessages(protocol)
    assert echo["70"] == "301"
    reply(protocol, echo)
    assert adaptor.ready
    clock.advance(30)
    [echo2] = peerMessages(protocol)
    clock.advance(10)
    assert not adaptor.ready
    assert adaptor.counters["echo_failures"] == 1


def test_traffic_postpones_echo():
    adaptor, endpoint, clock = makeAdaptor(echoInterval=30)
    protocol = endpoint.protocols[0]
    clock.advance(20)
    protocol.dataReceived(SPEC.encode({"t": "0210", "11": "000001", "41": "T1"}))
    clock.advance(20)
    assert peerMessages(protocol) == []
    clock.advance(10)
    assert len(peerMessages(protocol)) == 1


def test_keep_alive_when_nothing_was_sent_for_reconnect_delay():
    """
    As in jPOS, a keep-alive goes out when nothing was sent for
    reconnect-delay (jPOS's sender waits that long for a message).
    """
    adaptor, endpoint, clock = makeAdaptor(keepAlive=True, reconnectDelay=10.0)
    protocol = endpoint.protocols[0]
    clock.advance(6)
    protocol.sendMessage({"t": "0800", "11": "000001", "70": "301"})
    protocol.transport.clear()
    clock.advance(9.9)
    assert protocol.transport.value() == b""  # something was sent 9.9 s ago
    clock.advance(0.1)
    assert protocol.transport.value() == b"\x00\x00"
    clock.advance(10)
    assert protocol.transport.value() == b"\x00\x00\x00\x00"
    assert adaptor.ready


def test_read_timeout_drops_even_with_keep_alive():
    """
    As jPOS's channel timeout, the idle timeout is a read timeout: nothing
    received for that long drops the link, whether or not keep-alives are
    sent.
    """
    adaptor, endpoint, clock = makeAdaptor(keepAlive=True, reconnectDelay=5.0, idleTimeout=15)
    protocol = endpoint.protocols[0]
    runUntil(clock, 14.9)
    assert protocol.transport.value() == b"\x00\x00\x00\x00"  # at 5 and 10
    assert adaptor.ready
    clock.advance(0.1)
    assert not adaptor.ready
    assert adaptor.counters["idle_timeouts"] == 1


def test_idle_timeout_without_keep_alive_reconnects():
    adaptor, endpoint, clock = makeAdaptor(idleTimeout=15)
    clock.advance(15)
    assert not adaptor.ready
    assert adaptor.counters["idle_timeouts"] == 1


def test_echo_keeps_running_after_sign_on():
    """
    With sign-on, the echo timer is armed again once signed on, so a hung
    issuer is detected by its unanswered echo.
    """
    adaptor, endpoint, clock = makeAdaptor(signOn=True, echoInterval=30, echoTimeout=5)
    protocol = endpoint.protocols[0]
    clock.advance(1)
    [signOn] = peerMessages(protocol)
    reply(protocol, signOn)
    assert adaptor.ready
    clock.advance(30)
    [echo] = peerMessages(protocol)
    assert echo["70"] == "301"
    clock.advance(5)  # unanswered: the issuer hung
    assert not adaptor.ready and adaptor.counters["echo_failures"] == 1


def test_reconnects_after_failed_echoes_follow_the_backoff():
    """
    A hung issuer whose kernel still accepts connections is reconnected
    after each failed echo, not at once (which would flap): at the base
    delay for the first few, then with the growing backoff.
    """
    adaptor, endpoint, clock = makeAdaptor(echoInterval=5, echoTimeout=2, maxReconnectDelay=10)
    connects = []
    connect = endpoint.connect
    endpoint.connect = lambda factory: (connects.append(clock.seconds()), connect(factory))[1]
    runUntil(clock, 70)
    # each connection: echo at +5, failed at +7; then 1 s five times, 1, 1.5, 2.25... s
    assert connects == [8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 56.5, 65.75]
    assert adaptor.counters["echo_failures"] == 8
    runUntil(clock, 70.75)  # the last connection's echo: this time answered
    protocol = endpoint.protocols[-1]
    [echo] = peerMessages(protocol)
    reply(protocol, echo)
    assert adaptor._failures == 0 and adaptor.ready  # the next loss starts from the base


def test_probe_sends_an_echo_and_fires_when_answered():
    adaptor, endpoint, clock = makeAdaptor()
    protocol = endpoint.protocols[0]
    proof = []
    adaptor.probe().addCallback(proof.append)
    [echo] = peerMessages(protocol)
    assert echo["70"] == "301" and proof == []
    reply(protocol, echo)
    assert proof == [None]


def test_received_messages_reach_receivers_and_losses_reach_observers():
    adaptor, endpoint, clock = makeAdaptor()
    got, lost = [], []
    adaptor.addReceiver(lambda message, final: got.append(message) or True)
    adaptor.addLossObserver(lost.append)
    protocol = endpoint.protocols[0]
    protocol.dataReceived(SPEC.encode({"t": "0210", "11": "000001", "41": "T1"}))
    assert got[0]["11"] == "000001"
    protocol.connectionLost(None)
    assert len(lost) == 1


def test_a_peer_that_signs_off_gets_nothing_more_on_that_connection():
    """
    A server's planned stop signs off (0800 70=002); the adaptor answers,
    sends nothing more there, and takes the answers still owed.
    """
    adaptor, endpoint, clock = makeAdaptor(reconnectDelay=1.0)
    got = []
    adaptor.addReceiver(lambda message, final: got.append(message) or True)
    protocol = endpoint.protocols[0]
    protocol.dataReceived(SPEC.encode({"t": "0800", "11": "000009", "70": "002"}))
    [answer] = peerMessages(protocol)
    assert {k: answer[k] for k in ("t", "11", "70", "39")} == {
        "t": "0810",
        "11": "000009",
        "70": "002",
        "39": "00",
    }
    assert not adaptor.ready and adaptor.isConnected()
    protocol.dataReceived(SPEC.encode({"t": "0210", "11": "000001", "41": "T1", "39": "00"}))
    assert got[0]["11"] == "000001"
    protocol.connectionLost(None)
    clock.advance(1.0)  # an ordinary reconnect, at the base delay
    assert adaptor.ready and len(endpoint.protocols) == 2


def test_a_peer_that_signs_off_and_stays_is_left():
    adaptor, endpoint, clock = makeAdaptor()
    protocol = endpoint.protocols[0]
    protocol.dataReceived(SPEC.encode({"t": "0800", "11": "000009", "70": "002"}))
    clock.advance(adaptor.signOffLinger)
    assert not protocol.transport.connected


def test_a_busy_link_is_healthy_without_an_echo():
    """
    With an echo configured, traffic received proves the link healthy too:
    the next loss is retried from the base delay, not the grown one.
    """
    adaptor, endpoint, clock = makeAdaptor(
        echoInterval=30, reconnectDelay=10.0, maxReconnectDelay=40.0
    )
    endpoint.refuse = True
    endpoint.protocols[0].connectionLost(None)
    runUntil(clock, 40)  # three refusals
    endpoint.refuse = False
    runUntil(clock, 80)
    protocol = endpoint.protocols[-1]
    assert adaptor.ready and adaptor._failures > 0
    protocol.dataReceived(SPEC.encode({"t": "0210", "11": "000001", "41": "T1"}))
    assert adaptor._failures == 0 and adaptor.lastFailure is None
    assert adaptor._retryDelay(1) == 10.0


def test_reconnects_go_on_after_thousands_of_failures():
    # The backoff stays at its cap however many failures in a row (a
    # factor ** attempt would overflow a float after about 1,750).
    adaptor, endpoint, clock = makeAdaptor()
    endpoint.refuse = True
    endpoint.protocols[0].connectionLost(None)
    for _ in range(2000):
        clock.advance(4.0)  # the cap: one try each time
    assert adaptor.counters["connect_failures"] >= 2000
    endpoint.refuse = False
    clock.advance(4.0)
    assert adaptor.ready


def test_reconnect_attempts_cost_one_line_per_change_not_per_attempt():
    """
    A peer that refuses every attempt is said once ("cannot connect ...;
    retrying"), not once an attempt: Twisted's own "Scheduling retry" line
    is not written.
    """
    with capturedText() as lines:
        adaptor, endpoint, clock = makeAdaptor()
        endpoint.refuse = True
        endpoint.protocols[0].connectionLost(None)
        runUntil(clock, 30)
    assert not any("Scheduling retry" in line for line in lines), lines
    assert len([line for line in lines if "cannot connect" in line]) == 1
    adaptor.stopService()


def test_an_undecodable_frame_from_the_issuer_drops_the_link_and_reconnects():
    """
    A frame from the issuer that does not decode (a length prefix that
    framed a blob: the stream is out of step) drops the connection, counted
    and logged; the link reconnects after its delay and is ready again.
    """
    adaptor, endpoint, clock = makeAdaptor()
    protocol = endpoint.protocols[0]
    assert adaptor.ready
    with capturedText() as lines:
        protocol.dataReceived(SPEC.framing.frame(b"", b"\xff" * 200))
    assert not adaptor.ready and adaptor.counters["disconnects"] == 1
    assert adaptor.counters["bad_frames"] == 1
    assert any("undecodable frame from the issuer" in line for line in lines)
    runUntil(clock, 2)
    assert len(endpoint.protocols) == 2 and adaptor.ready
    adaptor.stopService()


def test_a_frame_longer_than_max_packet_length_drops_the_link_counted():
    limit = 1000
    adaptor, endpoint, clock = makeAdaptor(dataclasses.replace(SPEC, maxPacketLength=limit))
    protocol = endpoint.protocols[0]
    with capturedText() as lines:
        protocol.dataReceived(SPEC.framing.frame(b"", b"\0" * (limit + 1))[:100])
    assert not adaptor.ready and adaptor.counters["bad_frames"] == 1
    assert any(f"above max-packet-length {limit}" in line for line in lines), lines
    runUntil(clock, 2)
    assert len(endpoint.protocols) == 2 and adaptor.ready
    adaptor.stopService()


def test_frames_after_an_undecodable_one_in_the_same_read_are_dropped_with_it():
    """
    Once a frame from the issuer does not decode, nothing more of that
    stream is decoded, even what came in the same read, and the link is
    dropped once: a good-looking frame after it is not delivered, nor taken
    as proof that the issuer is healthy.
    """
    adaptor, endpoint, clock = makeAdaptor()
    protocol = endpoint.protocols[0]
    received = []
    adaptor.addReceiver(lambda message, final: received.append(message) or True)
    bad = SPEC.framing.frame(b"", b"\xff" * 200)
    good = SPEC.encode({"t": "0210", "11": "000001", "41": "TERM0001", "39": "00"})
    protocol.transport.abortConnection = lambda: None  # closes later, as TCP does
    protocol.dataReceived(bad + bad + good)
    assert adaptor.counters["bad_frames"] == 1 and received == []
    assert adaptor._failures == 1  # not reset by the good-looking frame
    adaptor.stopService()


def test_answers_that_stop_matching_reconnect_the_link():
    """
    A stream that decodes but is out of step (keys that no longer line
    up) loses every answer on a link that looks ready: after the MUX's
    C{unmatchedLimit} responses in a row that match no request while
    requests wait, the link is dropped (counted, logged) and reconnects.
    A matched answer, or a late one (its request timed out), is no sign.
    """
    adaptor, endpoint, clock = makeAdaptor()
    mux = QMUX("mux", adaptor, clock, unmatchedLimit=4)
    mux.startService()
    protocol = endpoint.protocols[0]

    def answer(stan):
        fields = {"t": "0210", "11": stan, "41": "TERM0001", "39": "00"}
        protocol.dataReceived(SPEC.encode(fields))

    mux.request({"t": "0200", "11": "000001", "41": "TERM0001"}, 1)
    clock.advance(2)  # 000001 timed out: its answer now comes late
    outcomes = []
    mux.request({"t": "0200", "11": "000002", "41": "TERM0001"}, 30).addBoth(outcomes.append)
    for stan in ("900001", "900002", "900003", "000001", "000001", "000001"):
        answer(stan)  # three unmatched, then late ones: no drop
    assert adaptor.ready and adaptor.counters["resyncs"] == 0
    answer("000002")  # matched: the run starts again
    assert outcomes[0]["39"] == "00"
    mux.request({"t": "0200", "11": "000003", "41": "TERM0001"}, 30).addBoth(outcomes.append)
    with capturedText() as lines:
        for stan in ("900001", "900002", "900003", "900004"):
            answer(stan)
    assert adaptor.counters["resyncs"] == 1 and not adaptor.ready
    assert any("stream out of step: 4 answers in a row matched no request" in x for x in lines)
    assert len(outcomes) == 2  # the request on the dropped connection has its outcome
    runUntil(clock, 3)
    assert len(endpoint.protocols) == 2 and adaptor.ready
    mux.stopService()
    adaptor.stopService()
