"""
Calls into code muxpool does not own (observers, receivers, packagers):
whatever they do, the others still run, the connection survives, and what
is logged names the code, never the data it was given.
"""

from twisted.internet.task import Clock
from zope.interface import implementer

from muxpool import Readiness
from muxpool._support import Observers, describeCode, describeError
from muxpool.channel import ChannelSpec
from muxpool.interfaces import IPackager
from muxpool.link import LinkBase
from tests.helpers import connectedProtocol
from tests.logcapture import capturedText

PAN = "4761739001010119"


def test_an_observer_that_raises_does_not_stop_the_others():
    """
    An observer that raises is logged; the observers after it still run.
    """
    seen = []
    observers = Observers("test")
    observers.add(lambda value: seen.append(("first", value)))
    observers.add(lambda value: 1 / 0)
    observers.add(lambda value: seen.append(("third", value)))
    with capturedText() as lines:
        observers.notify(True)
    assert seen == [("first", True), ("third", True)]
    assert "ZeroDivisionError at test_boundaries.py" in "\n".join(lines)


def test_observers_may_change_the_list_while_notified():
    observers = Observers("test")
    seen = []

    def once(value):
        seen.append("once")
        observers.remove(once)
        observers.add(lambda value: seen.append("added"))

    observers.add(once)
    observers.add(lambda value: seen.append("other"))
    observers.notify(1)
    observers.notify(2)
    assert seen == ["once", "other", "other", "added"]


def test_readiness_and_registry_survive_their_observers():
    readiness = Readiness(False)
    after = []
    readiness.addObserver(lambda value: (_ for _ in ()).throw(RuntimeError("x")))
    readiness.addObserver(after.append)
    waited = []
    readiness.whenReady().addCallback(waited.append)
    readiness.set(True)
    assert after == [True] and waited == [True] and readiness.value


def test_an_observer_that_flips_the_state_back():
    readiness = Readiness(False)
    readiness.addObserver(lambda value: readiness.set(False) if value else None)
    up = []
    readiness.whenReady().addCallback(up.append)
    readiness.set(True)
    assert not readiness.value and up == []  # its waiters wait for a real "true"


def test_a_link_survives_a_loss_observer_and_a_receiver_that_raise():
    spec = ChannelSpec.fromConfig("NACChannel", "ISO87A")
    link = LinkBase("link", spec)
    lost, got = [], []
    link.addLossObserver(lambda reason: 1 / 0)
    link.addLossObserver(lost.append)
    link.addReceiver(lambda message, final: got.append(message) or True)
    link.addReceiver(lambda message, final: {}[message["2"]])  # newest: offered first
    with capturedText() as lines:
        link._deliver({"t": "0210", "2": PAN, "11": "000001"})
        link._lost("gone")
    assert got and lost == ["gone"]
    text = "\n".join(lines)
    assert "KeyError at test_boundaries.py" in text and PAN not in text


@implementer(IPackager)
class Hostile:
    """
    A user's packager whose unpack raises something else than UnpackError,
    with card data in its text.
    """

    name = "hostile"
    binaryFields = frozenset()

    def pack(self, message):
        return b"0800"

    def unpack(self, data):
        raise KeyError(PAN)


def test_a_packager_that_raises_on_unpack_is_a_bad_frame_not_a_dropped_link():
    """
    A packager that raises while unpacking gives a bad frame, counted and
    logged without card data; the exception does not escape dataReceived
    (where Twisted would log its text, a PAN, and drop the connection).
    """
    spec = ChannelSpec.fromConfig("NACChannel", Hostile())
    with capturedText() as lines:
        protocol, transport, owner = connectedProtocol(spec, clock=Clock())
        protocol.dataReceived(spec.framing.frame(b"", b"0800whatever"))
        protocol.dataReceived(spec.framing.frame(b"", b"0800again"))
    assert protocol.counters["rx_bad"] == 2 and owner.messages == []
    assert not transport.disconnecting
    text = "\n".join(lines)
    assert "packager hostile failed: KeyError at test_boundaries.py" in text
    assert PAN not in text


def test_where_names_class_and_file():
    assert describeCode(Hostile()) == f"tests.test_boundaries.Hostile ({__file__})"
    assert describeCode(test_where_names_class_and_file).startswith(
        "tests.test_boundaries.test_where_names_class_and_file ("
    )
    try:
        {}[PAN]
    except KeyError as e:
        assert describeError(e).startswith("KeyError at test_boundaries.py:")
        assert PAN not in describeError(e)


def test_a_listener_that_raises_gets_its_request_declined():
    """
    A listener that raises gives the request a clear outcome:
    the acquirer is answered 39=96 (no card data), the listener is named.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from muxpool.link import QServer

    class Broken:
        def process(self, source, message):
            raise ValueError(message["35"])

    spec = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
    server = QServer("front", spec, "tcp:0", MemoryReactorClock(), listeners=[Broken()])
    server.startService()
    protocol = server._accept(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    protocol.makeConnection(transport)
    request = {
        "t": "0200",
        "2": PAN,
        "11": "000001",
        "41": "TERM0001",
        "35": PAN + "=22122011758928889",
    }
    with capturedText() as lines:
        protocol.dataReceived(spec.encode(request))
    peer, _, owner = connectedProtocol(spec)
    peer.dataReceived(transport.value())
    [answer] = owner.messages
    assert answer["39"] == "96" and answer["t"] == "0210" and "35" not in answer
    text = "\n".join(lines)
    assert "<locals>.Broken (" in text and "ValueError at test_boundaries.py" in text
    assert "=22122011758928889" not in text
    assert server.inFlight() == 0 and server.counters["listener_errors"] == 1


def test_a_listener_that_answers_and_then_raises_is_not_answered_twice():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from muxpool.link import QServer
    from muxpool.listeners import Responder

    class AnswersThenRaises:
        def process(self, source, message):
            source.send(Responder().response(message))
            raise RuntimeError("its own logging failed")

    spec = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
    server = QServer("front", spec, "tcp:0", MemoryReactorClock(), listeners=[AnswersThenRaises()])
    server.startService()
    protocol = server._accept(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(spec.encode({"t": "0200", "11": "000001", "41": "TERM0001"}))
    peer, _, owner = connectedProtocol(spec)
    peer.dataReceived(transport.value())
    assert [m["39"] for m in owner.messages] == ["00"]
    assert server.counters["listener_errors"] == 1 and server.inFlight() == 0


def test_import_named_says_what_is_missing(tmp_path, monkeypatch):
    import pytest

    from muxpool._config import NoSuchModule, NoSuchName, importNamed

    (tmp_path / "usermod.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importNamed("os.path.join") is __import__("os").path.join
    with pytest.raises(NoSuchModule, match="no module no_such_pkg.mod"):
        importNamed("no_such_pkg.mod.Thing")
    with pytest.raises(NoSuchName, match="module os has no nothing_here"):
        importNamed("os.nothing_here")
    with pytest.raises(NoSuchModule):
        importNamed("undotted")
    # the module exists but its own import fails: its author's to fix, as is
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        importNamed("usermod.Thing")
