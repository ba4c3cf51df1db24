"""
Fuzz targets: what a peer or an operator can feed muxpool that is not
what it expects.  Each takes one byte string and must never let an
exception escape other than the one its API documents, never hang, and
never keep more than a frame's worth of bytes.

  - C{frames}: bytes arriving on a connection, in chunks, for every
    channel (framing) and packager: the channel protocol reports what it
    cannot frame or unpack and closes, nothing raises out of dataReceived;
  - C{unpack}: a message body given to every packager: a dict or
    L{UnpackError};
  - C{descriptor}: a deploy descriptor read and built (on a memory
    reactor): a bean or L{DescriptorError}.

The first bytes of the input choose the channel and packager, so one
corpus file replays the same way every time.  tests/reliability/fuzz.py
runs a target coverage-guided with atheris (CPython); without atheris,
tests/reliability/test_fuzz.py drives the same targets with Hypothesis.
C{python -m tests.reliability.fuzzing} writes the seeds (L{seeds}) into
the corpus.
"""

import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from muxpool.channel import ChannelSpec, IChannelOwner, ISOChannelProtocol
from muxpool.deploy import DescriptorError, buildBean, readDescriptor
from muxpool.iso import FRAMINGS, UnpackError, getPackager, loadGenericPackager
from muxpool.registry import Registry

CORPUS = Path(__file__).parent / "corpus"
INTEROP = Path(os.environ.get("MUXPOOL_INTEROP", Path(__file__).parents[3] / "shared" / "interop"))
CHANNELS = sorted(FRAMINGS)


def _packagers():
    found = [("ISO87A", getPackager("ISO87A")), ("ISO87B", getPackager("ISO87B"))]
    for name in ("custom-packager.xml", "custom-abitmap-packager.xml"):
        path = INTEROP / "packager" / name
        if path.exists():
            found.append((name, loadGenericPackager(str(path))))
    return found


PACKAGERS = _packagers()


@implementer(IChannelOwner)
class _Owner:
    def __init__(self):
        self.messages = 0
        self.undecodable = 0

    def channelConnected(self, protocol):
        pass

    def channelMessage(self, protocol, message):
        self.messages += 1

    def channelIdle(self, protocol):
        return False

    def channelUndecodable(self, protocol, why):
        self.undecodable += 1

    def channelSecured(self, protocol):
        pass

    def channelLost(self, protocol, reason):
        pass


def _spec(selector):
    channel = CHANNELS[selector[0] % len(CHANNELS)]
    packager = PACKAGERS[selector[1] % len(PACKAGERS)][1]
    return ChannelSpec.fromConfig(channel, packager, properties={"max-packet-length": "8192"})


def frames(data: bytes) -> None:
    """
    Byte 0 picks the channel, byte 1 the packager, byte 2 the chunk size;
    the rest arrives in chunks of that size.
    """
    if len(data) < 3:
        return
    spec = _spec(data[:2])
    owner = _Owner()
    protocol = ISOChannelProtocol(spec, owner, Clock())
    transport = StringTransport()
    protocol.makeConnection(transport)
    size = data[2] % 64 + 1
    body = data[3:]
    for start in range(0, len(body), size):
        if transport.disconnecting:
            break
        protocol.dataReceived(body[start : start + size])
    held = len(protocol._buffer) if hasattr(protocol, "_buffer") else 0
    assert held <= 8192 + 64, f"{held} bytes held by {spec.framing.name}"


def unpack(data: bytes) -> None:
    """
    Byte 0 picks the packager; the rest is a message body.
    """
    if not data:
        return
    packager = PACKAGERS[data[0] % len(PACKAGERS)][1]
    try:
        packager.unpack(bytes(data[1:]))
    except UnpackError:
        pass


def descriptor(data: bytes) -> None:
    """
    The whole input is a descriptor file, read and built.
    """
    path = "fuzz/10_fuzz.xml"
    try:
        root = readDescriptor(path, env={}, source=data)
        buildBean(path, root, MemoryReactorClock(), Registry())
    except DescriptorError:
        pass


TARGETS = {"frames": frames, "unpack": unpack, "descriptor": descriptor}


def seeds():
    """
    The inputs the corpus started from: a request and its answer framed by
    every channel with every packager, packed by every packager, and the
    repository's own descriptors.  (C{--seed} writes them to the corpus.)
    """
    from muxpool.iso import responseMTI, sampleRequest

    request = sampleRequest(1)
    answer = dict(request, t=responseMTI(request["t"]), **{"39": "00"})
    found = {"frames": {}, "unpack": {}, "descriptor": {}}
    for p, (name, packager) in enumerate(PACKAGERS):
        for message in (request, answer):
            try:
                body = packager.pack(message)
            except Exception:
                continue  # a custom packager without these fields
            found["unpack"][f"{name}-{message['t']}"] = bytes([p]) + body
            for c, channel in enumerate(CHANNELS):
                spec = _spec(bytes([c, p]))
                wire = spec.encode(message)
                found["frames"][f"{channel}-{name}-{message['t']}"] = bytes([c, p, 63]) + wire
    root = Path(__file__).parents[2]
    for folder in ("examples/demo/deploy", "tests/fixtures/jpos-article", "deploy/container/node"):
        for path in sorted((root / folder).glob("*.xml")):
            found["descriptor"][f"{folder.replace('/', '-')}-{path.name}"] = path.read_bytes()
    return found


def writeSeeds():
    for target, inputs in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in inputs.items():
            (folder / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    writeSeeds()
