"""
The front door, in memory: sessions that are not read while their client
does not read or owes too many answers, timeouts for idle sessions and
unfinished frames, planned stops that drain, and answers whose client is
gone, logged to be reversed.
"""

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from zope.interface import implementer
from zope.interface.verify import verifyObject

from muxpool.channel import ChannelSpec, IChannelOwner
from muxpool.errors import AnswerUndelivered
from muxpool.interfaces import ILink, IRequestListener, ISource
from muxpool.link import QServer, ServerSettings
from muxpool.listeners import Responder
from muxpool.testing import runUntil
from tests.helpers import connectedProtocol
from tests.logcapture import capturedText

SPEC = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")


def request(stan, **extra):
    message = {
        "t": "0200",
        "11": "%06d" % stan,
        "41": "TERM0001",
        "37": "RRN%09d" % stan,
        "4": "000000001000",
    }
    message.update(extra)
    return message


@implementer(IRequestListener)
class Holding:
    """
    Keeps each request and the session to answer it on, for the test to
    answer when it likes.
    """

    def __init__(self):
        self.held = []

    def process(self, source, message):
        self.held.append((source, message))
        return True

    def answer(self, index=0, code="00"):
        source, message = self.held.pop(index)
        response = Responder(resultCode=code).response(message)
        source.send(response)
        return response


def makeServer(listener=None, **kwargs):
    reactor = MemoryReactorClock()
    server = QServer(
        "front",
        SPEC,
        "tcp:0",
        reactor,
        ServerSettings(**kwargs),
        listeners=[listener or Responder()],
    )
    server.startService()
    return server, reactor


def connect(server, port=5000):
    address = IPv4Address("TCP", "127.0.0.1", port)
    protocol = server._accept(address)
    if protocol is None:
        return None, None
    transport = StringTransportWithDisconnection(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def answers(transport):
    """
    What the server wrote, decoded as the client would.
    """
    peer, _, owner = connectedProtocol(SPEC)
    peer.dataReceived(transport.value())
    transport.clear()
    return owner.messages


def test_interfaces():
    server, _ = makeServer()
    protocol, _ = connect(server)
    session = server.sessions[protocol]
    assert verifyObject(IChannelOwner, server)
    assert verifyObject(ILink, session) and verifyObject(ISource, session)


def test_a_client_that_does_not_read_stops_being_read():
    """
    A client that does not read its answers stops being read: what it
    sends is not taken as requests until it reads again (backpressure).
    """
    listener = Holding()
    server, _ = makeServer(listener)
    protocol, transport = connect(server)
    assert transport.producer is server.sessions[protocol] and transport.streaming
    transport.producer.pauseProducing()  # the write buffer passed its high-water mark
    assert transport.producerState == "paused"
    protocol.dataReceived(SPEC.encode(request(1)) + SPEC.encode(request(2)))
    assert listener.held == []  # read from the socket, but not taken as requests
    transport.producer.resumeProducing()  # the client read its answers
    assert [m["11"] for _, m in listener.held] == ["000001", "000002"]
    assert transport.producerState == "producing"


def test_requests_in_flight_per_session_are_bounded():
    listener = Holding()
    server, _ = makeServer(listener, maxInFlight=3)
    protocol, transport = connect(server)
    protocol.dataReceived(b"".join(SPEC.encode(request(i)) for i in range(1, 8)))
    assert len(listener.held) == 3 and transport.producerState == "paused"
    listener.answer()
    assert len(listener.held) == 3 and transport.producerState == "paused"
    for _ in range(3):
        listener.answer()
    assert len(listener.held) == 3  # 7 - 4 answered
    for _ in range(3):
        listener.answer()
    assert listener.held == [] and transport.producerState == "producing"
    assert [m["11"] for m in answers(transport)] == ["%06d" % i for i in range(1, 8)]


def test_an_unfinished_frame_is_closed_after_the_frame_timeout():
    """
    An unfinished frame is closed after the frame timeout, counted from
    when the frame started: a `9999` length prefix then silence, and a
    sender of one byte a second alike.
    """
    server, reactor = makeServer(frameTimeout=5, idleTimeout=300)
    silent, silentTransport = connect(server, 5001)
    slow, slowTransport = connect(server, 5002)
    silent.dataReceived(b"9999")
    wire = SPEC.encode(request(1))
    with capturedText() as lines:
        for i in range(6):
            slow.dataReceived(wire[i : i + 1])
            reactor.advance(1)
    assert not silentTransport.connected and not slowTransport.connected
    closes = [line.split("\n")[0] for line in lines if "connection from" in line.split("\n")[0]]
    assert len(closes) == 2
    assert "127.0.0.1:5002 closed: a frame started 5s ago was not finished" in "\n".join(closes)
    assert server.sessions == {}


def test_whole_frames_in_pieces_are_not_timed_out():
    server, reactor = makeServer(frameTimeout=5)
    protocol, transport = connect(server)
    for i in range(1, 20):
        wire = SPEC.encode(request(i))
        protocol.dataReceived(wire[:10])
        reactor.advance(4)
        protocol.dataReceived(wire[10:])
    assert transport.connected and len(answers(transport)) == 19


def test_an_idle_session_is_closed_but_not_while_it_is_owed_answers():
    listener = Holding()
    server, reactor = makeServer(listener, idleTimeout=10)
    protocol, transport = connect(server)
    protocol.dataReceived(SPEC.encode(request(1)))
    runUntil(reactor, 30)
    assert transport.connected  # silent, but waiting for its answer
    listener.answer()
    runUntil(reactor, 39.9)
    assert transport.connected
    with capturedText() as lines:
        runUntil(reactor, 40.1)
    assert not transport.connected
    assert any("127.0.0.1:5000 closed: idle: nothing received for 10s" in line for line in lines)


def test_a_planned_stop_answers_what_was_read_and_what_still_comes():
    """
    A planned stop drains: every request already read gets its answer,
    and so does one sent after the stop began (a jPOS client keeps
    writing until it sees the close); each session closes once it is owed
    nothing and its client has been quiet for stop-quiet.
    """
    listener = Holding()
    server, reactor = makeServer(listener, gracePeriod=5, stopQuiet=0.5)
    first, firstTransport = connect(server, 5001)
    second, secondTransport = connect(server, 5002)
    first.dataReceived(SPEC.encode(request(1)) + SPEC.encode(request(2)))
    second.dataReceived(SPEC.encode(request(3)))
    stopped = []
    server.stopService().addCallback(stopped.append)
    first.dataReceived(SPEC.encode(request(4)))  # after the stop: still taken
    assert [m["11"] for _, m in listener.held] == ["000001", "000002", "000003", "000004"]
    for _ in range(3):
        listener.answer(0)
    reactor.advance(0.4)
    assert firstTransport.connected and secondTransport.connected  # quiet for 0.4 s only
    reactor.advance(0.2)
    assert firstTransport.connected  # owed 000004
    assert not secondTransport.connected  # owed nothing, quiet
    listener.answer(0)  # its client has been quiet long enough
    assert not firstTransport.connected and stopped != []
    assert [m["11"] for m in answers(firstTransport)] == ["000001", "000002", "000004"]
    assert [m["11"] for m in answers(secondTransport)] == ["000003"]


def test_a_client_that_keeps_sending_while_the_server_stops_is_declined_then_closed():
    """
    A client that ignores the stop and keeps sending (as a jPOS acquirer
    ignores a sign-off) has its requests answered while the grace period
    leaves time, then declined 91 at once (decline fields only), until
    the grace period ends; what it sends after the close is counted, and
    one line says how many were declined and left unanswered.
    """
    server, reactor = makeServer(Responder(), gracePeriod=5, stopQuiet=0.5)
    protocol, transport = connect(server, 5001)
    stopped = []
    server.stopService().addCallback(stopped.append)
    stan = 0
    with capturedText() as lines:
        while transport.connected:
            stan += 1
            protocol.dataReceived(SPEC.encode(request(stan)))
            reactor.advance(0.25)
    codes = [m["39"] for m in answers(transport)]
    # forwarded in the first half of the grace period, then declined
    assert codes == ["00"] * 10 + ["91"] * 10, codes
    declined = [m for m in answers(transport) if m["39"] == "91"]
    assert all(set(m) <= {"t", "39", "3", "4", "7", "11", "12", "13", "41"} for m in declined)
    assert stopped != []
    said = [x for x in lines if "kept sending while the server stopped" in x]
    # (what comes after a half-close is counted too: see test_front_door_e2e)
    assert len(said) == 1 and "10 requests declined 91" in said[0], said


def test_an_answer_whose_client_is_gone_is_one_warning_line_to_reverse_it_by():
    """
    An answer whose client is gone is one warning line, with the key to
    reverse it by (and no card data), and a count.
    """
    listener = Holding()
    server, reactor = makeServer(listener)
    protocol, transport = connect(server)
    protocol.dataReceived(SPEC.encode(request(7, **{"2": "4761739001010119"})))
    transport.loseConnection()
    with capturedText() as lines:
        with pytest.raises(AnswerUndelivered):
            listener.answer()
    warnings = [line.split("\n")[0] for line in lines if "not delivered" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        "front: answer not delivered to 127.0.0.1:5000 (its client is "
        "gone): 0210 11=000007 41=TERM0001 37=RRN000000007 39=00; "
        "reverse it if it was approved"
    )
    assert "'log_level': <LogLevel=warn>" in [line for line in lines if "not delivered" in line][0]
    assert server.counters["undelivered"] == 1
    assert "4761739001010119" not in "\n".join(lines)


def test_a_stop_with_sign_off_closes_once_the_client_has_stopped_sending():
    listener = Holding()
    server, reactor = makeServer(listener, signOffOnStop=True, signOffTimeout=2)
    protocol, transport = connect(server)
    stopped = []
    server.stopService().addCallback(stopped.append)
    [signOff] = answers(transport)
    assert signOff["t"] == "0800" and signOff["70"] == "002"
    protocol.dataReceived(SPEC.encode(request(1)))  # sent before it saw the sign-off
    assert len(listener.held) == 1
    protocol.dataReceived(SPEC.encode({"t": "0810", "11": signOff["11"], "70": "002", "39": "00"}))
    listener.answer()  # it sends nothing more: closed once quiet
    assert transport.connected
    reactor.advance(0.5)
    assert not transport.connected and stopped != []


def test_an_idle_client_is_closed_only_once_it_answered_the_sign_off():
    """
    A client quiet before the stop may write a request just before it sees
    the sign-off: the session is not closed until it answered it, so that
    request is read and answered.
    """
    listener = Holding()
    server, reactor = makeServer(listener, signOffOnStop=True, signOffTimeout=2, stopQuiet=0.5)
    protocol, transport = connect(server)
    reactor.advance(5)  # idle for a while
    stopped = []
    server.stopService().addCallback(stopped.append)
    [signOff] = answers(transport)
    assert transport.connected  # quiet, but the sign-off is not answered yet
    protocol.dataReceived(SPEC.encode(request(1)))  # written before it saw the 0800
    protocol.dataReceived(SPEC.encode({"t": "0810", "11": signOff["11"], "70": "002", "39": "00"}))
    listener.answer()
    reactor.advance(0.5)
    assert not transport.connected and stopped != []
    assert [m["11"] for m in answers(transport) if m["t"] == "0210"] == ["000001"]


def test_a_client_that_does_not_answer_the_sign_off_is_drained_after_the_timeout():
    """
    A client that does not answer the sign-off (a jPOS client ignores
    0800s) is logged, naming it, and goes on being read and answered
    until it is quiet.
    """
    listener = Holding()
    server, reactor = makeServer(listener, signOffOnStop=True, signOffTimeout=1)
    protocol, transport = connect(server)
    protocol.dataReceived(SPEC.encode(request(1)))
    stopped = []
    with capturedText() as lines:
        server.stopService().addCallback(stopped.append)
        reactor.advance(1)
    assert any("127.0.0.1:5000 did not answer the sign-off within 1s" in line for line in lines)
    protocol.dataReceived(SPEC.encode(request(2)))
    assert len(listener.held) == 2
    listener.answer()
    listener.answer()
    reactor.advance(0.5)
    assert not transport.connected and stopped != []
    assert [m["11"] for m in answers(transport) if m["t"] == "0210"] == ["000001", "000002"]


def test_refusals_close_at_once_and_are_logged_at_a_bounded_rate():
    server, reactor = makeServer(maxSessions=1)
    kept, _ = connect(server, 5000)
    with capturedText() as lines:
        refused = [connect(server, 6000 + i)[0] for i in range(200)]
    assert refused == [None] * 200 and server.counters["refused"] == 200
    assert sum("refused connection" in line for line in lines) == 1


def test_the_default_session_limit_is_for_every_server_together():
    """
    Without maxSessions, a server's limit is the process's share of its
    file descriptors, for the sessions of all such servers together: two
    servers do not hold twice as many.  One with its own maxSessions is
    held to it, and its sessions count in the process's too.
    """
    reactor = MemoryReactorClock()

    def server(name, **settings):
        server = QServer(
            name, SPEC, "tcp:0", reactor, ServerSettings(**settings), listeners=[Responder()]
        )
        server.startService()
        return server

    a, b, own = server("a"), server("b"), server("own", maxSessions=5)
    a.maxSessions = b.maxSessions = 3  # as if the descriptor limit gave 3
    assert connect(a, 5000)[0] and connect(a, 5001)[0] and connect(b, 5002)[0]
    with capturedText() as lines:
        assert connect(b, 5003)[0] is None and connect(a, 5004)[0] is None
    assert "3 sessions open in this process" in "\n".join(lines)
    next(iter(a.sessions)).transport.loseConnection()
    assert connect(b, 5005)[0] is not None
    # its own limit, whatever the others hold; its sessions use descriptors too
    assert all(connect(own, 6000 + i)[0] for i in range(5))
    next(iter(b.sessions)).transport.loseConnection()
    assert connect(b, 5006)[0] is None


def test_bad_frames_are_logged_at_a_bounded_rate_for_the_whole_server():
    # One limiter for the whole server: a client opening many connections
    # does not get one warning line each.
    server, reactor = makeServer()
    with capturedText() as lines:
        for i in range(50):
            protocol, transport = connect(server, 7000 + i)
            protocol.dataReceived(b"0004\xff\xff\xff\xff")  # undecodable
    assert sum(p.counters["rx_bad"] for p in server.sessions) == 50
    assert sum("undecodable" in line for line in lines) == 1


def test_a_request_answered_at_once_under_the_in_flight_limit_is_read_once():
    """
    A request answered inside the frame loop, under the in-flight limit,
    is read once: releasing the hold does not decode the frames already
    taken again (which would send a request on twice).
    """
    seen = []

    @implementer(IRequestListener)
    class AnswersAtOnce:
        def process(self, source, message):
            seen.append(message["11"])
            source.send(Responder().response(message))
            return True

    server, _ = makeServer(AnswersAtOnce(), maxInFlight=1)
    protocol, transport = connect(server)
    wire = b"".join(SPEC.encode(request(i)) for i in range(1, 6))
    protocol.dataReceived(wire[:7])  # a frame split over two reads
    protocol.dataReceived(wire[7:])
    assert seen == ["%06d" % i for i in range(1, 6)]
    assert [m["11"] for m in answers(transport)] == seen


def test_a_client_that_does_not_read_loses_its_slot_after_the_idle_timeout():
    """
    A client that does not read loses its slot after the idle timeout:
    closing waits for its write buffer only until the close timeout, then
    the connection is aborted.
    """
    from twisted.internet.testing import StringTransport

    server, reactor = makeServer(Responder(), idleTimeout=10, maxSessions=1)
    address = IPv4Address("TCP", "127.0.0.1", 5000)
    protocol = server._accept(address)
    transport = StringTransport(peerAddress=address)  # never flushes: a client not reading
    protocol.makeConnection(transport)
    protocol.dataReceived(SPEC.encode(request(1)))
    transport.producer.pauseProducing()  # its answers fill the buffer
    with capturedText() as lines:
        runUntil(reactor, 10)
        assert transport.disconnecting and not transport.disconnected
        runUntil(reactor, 10 + protocol.closeTimeout)
    assert transport.disconnected  # cut off, not left to hold the slot
    assert any("closed: idle" in line for line in lines)


def frames(*messages):
    return b"".join(SPEC.encode(m) for m in messages)


def forwarding(**settings):
    """
    A front server forwarding to a QMUX over a MemoryLink, an issuer on it.
    """
    from twisted.internet.task import Clock

    from muxpool.listeners import Forward
    from muxpool.mux import QMUX
    from muxpool.testing import MemoryIssuer, MemoryLink

    clock = Clock()
    link = MemoryLink("issuer-channel")
    issuer = MemoryIssuer(link, clock)
    mux = QMUX("core-mux", link, clock)
    mux.startService()
    server, reactor = makeServer(Forward(mux, timeout=5), **settings)
    return server, mux, issuer


def test_responses_from_a_client_are_not_forwarded_and_hold_no_slot():
    """
    A client's responses (0210s) are not forwarded to an issuer as
    requests: each is counted unhandled and holds no in-flight slot, so a
    flood of them neither grows a MUX's table nor stops the session's
    requests from being read.
    """
    server, mux, issuer = forwarding(maxInFlight=4)
    protocol, transport = connect(server)
    session = server.sessions[protocol]
    with capturedText() as lines:
        protocol.dataReceived(frames(*[dict(request(i), t="0210") for i in range(50)]))
    assert issuer.requests == [] and mux.pendingCount() == 0
    assert session.inFlight == 0 and not session.holds
    assert server.counters["rx_unhandled"] == 50
    assert len([line for line in lines if "unhandled" in line]) == 1  # at a bounded rate
    protocol.dataReceived(frames(request(51)))
    assert [m["39"] for m in answers(transport)] == ["00"] and len(issuer.requests) == 1


@pytest.mark.parametrize("mti", ["02D0", "020", "x"])
def test_a_message_whose_mti_is_not_four_digits_is_refused_once(mti):
    """
    A message whose MTI is not four digits cannot be answered (no response
    MTI): it is refused and logged (at a bounded rate), given to no
    listener, and holds no in-flight slot; the session goes on.
    """
    server, mux, issuer = forwarding(maxInFlight=2)
    mux.link.ready.set(False)  # what Forward would answer is a decline
    protocol, transport = connect(server)
    session = server.sessions[protocol]
    bad = {"t": mti, "11": "000001", "41": "TERM0001"}
    with capturedText() as lines:
        for _ in range(5):
            protocol.dataReceived(
                SPEC.framing.frame(
                    b"",
                    bad["t"].encode().ljust(4)[:4] + SPEC.packager.pack(dict(bad, t="0200"))[4:],
                )
            )
    assert session.inFlight == 0 and not session.holds and protocol.connected
    assert server.counters["rx_refused"] == 5 and issuer.requests == []
    refused = [line for line in lines if "is not four digits" in line]
    assert len(refused) == 1, lines
    assert not any("Unhandled" in line or "Traceback" in line for line in lines)


@pytest_twisted.inlineCallbacks
def test_the_accept_loop_lines_of_a_listening_port_are_rate_limited():
    """
    What Twisted's accept loop logs for a server's port (a refused accept,
    EMFILE and its recovery: a line per connection) is written once, then
    once an interval with how many more came.
    """
    from twisted.internet import reactor

    server = QServer("front", SPEC, "tcp:0:interface=127.0.0.1", reactor, ServerSettings())
    server.startService()
    try:
        port = yield server.whenListening()
        with capturedText() as lines:
            for _ in range(100):
                port._logger.info(
                    "Could not accept new connection ({acceptError})", acceptError="EMFILE"
                )
        assert sum("Could not accept new connection" in line for line in lines) == 1
    finally:
        yield server.stopService()
