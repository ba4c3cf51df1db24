"""
Hostile peers at a real switch's front, all at once, while a good client
runs, and an issuer that floods its link with responses nobody asked for:
the good client keeps being answered, the switch's memory stays bounded,
and each hostile session is closed within its timeout.
"""

import os
import platform

import pytest_twisted
from twisted.internet import defer, threads
from twisted.internet.task import deferLater

from muxpool.channel import ChannelSpec
from muxpool.listeners import Responder
from muxpool.testing import portOf, startIssuer
from tests.e2e import ASCII, issuers, reactor, stopIssuers, switch
from tests.reliability.scenario import Load, account, rss, scaled
from tests.test_hostile_clients import closeAll, neverReads, raw

FRAME_TIMEOUT = 2.0
IDLE_TIMEOUT = 8.0
MAX_PACKET = 4096
NAC = ChannelSpec.fromConfig("NACChannel", "ISO87B")
SETTINGS = (
    f'\n  <property name="frame-timeout" value="{int(FRAME_TIMEOUT * 1000)}"/>'
    f'\n  <property name="idle-timeout" value="{int(IDLE_TIMEOUT * 1000)}"/>'
)
CHANNEL = f'\n    <property name="max-packet-length" value="{MAX_PACKET}"/>\n  '


class Flooding(Responder):
    """
    An issuer that answers each request, then writes C{extra} responses
    that match nothing (fewer in a row than a QMUX's unmatched limit).
    """

    def __init__(self, extra, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra
        self.flooded = 0

    def process(self, source, message):
        handled = super().process(source, message)
        for n in range(self.extra):
            self.flooded += 1
            source.send({"t": "0210", "11": "%06d" % (900000 + n), "41": "FLOOD001", "39": "00"})
        return handled


@pytest_twisted.inlineCallbacks
def test_hostile_peers_at_the_front_and_a_flooding_issuer(tmp_path, figures):
    made = issuers(tmp_path, count=2, delay=0)
    flooding = Flooding(10, fixed={"44": "issuer-3"}, record=str(tmp_path / "issuer-3.jsonl"))
    flooder = yield startIssuer(reactor(), [flooding], spec=NAC, name="flooder")
    ports = [p for _, p, _ in made] + [portOf(flooder)]
    proc, port, _ = switch(tmp_path, ports, extra=SETTINGS, frontChannel=CHANNEL)
    clients, dribble, hogs = [], [], []
    load = yield Load(port, connections=2, inFlight=8, timeout=5).start()
    try:
        yield load.whenDone(3000)  # warm
        before = rss(proc.process.pid)
        garbage = []
        for _ in range(20):
            client = yield raw(port, clients)
            client.transport.write(os.urandom(1000))
            garbage.append(client)
        huge = yield raw(port, clients)
        huge.transport.write(b"9999" + b"0" * 100)  # beyond max-packet-length
        silent = yield raw(port, clients)
        silent.transport.write(b"0100")  # a length prefix, then silence
        slow = yield raw(port, clients)
        frame = ASCII.encode({"t": "0200", "11": "000001", "41": "SLOW0001"})
        dribble += [
            reactor().callLater(1.0 * i, slow.transport.write, frame[i : i + 1])
            for i in range(len(frame))
        ]
        churned = 0
        for _ in range(scaled(20, 100)):  # a thousand (or five) connections opened and closed
            batch = yield defer.gatherResults([raw(port, []) for _ in range(50)])
            for client in batch:
                client.transport.loseConnection()
            yield defer.gatherResults([c.closed for c in batch])
            churned += len(batch)
        wrote, stopped, hog = yield threads.deferToThread(neverReads, port, 300000)
        hogs.append(hog)
        during = rss(proc.process.pid)
        yield load.whenDone(3000)  # the good client, with all of that going on
        lives = {
            "random bytes": max((yield defer.gatherResults([c.closed for c in garbage]))),
            "huge length prefix": (yield huge.closed),
            "prefix then silence": (yield silent.closed),
            "a byte a second": (yield slow.closed),
        }
        yield deferLater(reactor(), 0)
        yield load.stop()
        after = rss(proc.process.pid)
    finally:
        for call in dribble:
            if call.active():
                call.cancel()
        closeAll(clients)
        for hog in hogs:
            hog.close()
        yield load.stop()
        code = proc.stop()
        yield flooder.stopService()
        stopIssuers(made)
    records = [r for _, _, r in made] + [tmp_path / "issuer-3.jsonl"]
    acc = account(load, records, proc.log, ["issuer-1", "issuer-2", "issuer-3"])
    assert acc.outcomes == {"00": acc.sent}, acc.outcomes
    assert lives["random bytes"] < FRAME_TIMEOUT
    assert lives["huge length prefix"] < FRAME_TIMEOUT
    assert FRAME_TIMEOUT <= lives["prefix then silence"] < FRAME_TIMEOUT + 3
    assert FRAME_TIMEOUT <= lives["a byte a second"] < FRAME_TIMEOUT + 3
    assert stopped, "the switch kept reading a client that does not read"
    limit = 60 if platform.python_implementation() == "PyPy" else 30
    assert during - before < limit and after - before < limit, (before, during, after)
    assert flooding.flooded >= 1000 and "stream out of step" not in proc.log
    assert code == 0 and "Traceback" not in proc.log
    figures.update(acc.figures())
    figures.update(
        {
            "hostile lifetimes s": {k: round(v, 2) for k, v in lives.items()},
            "connections opened and closed": churned,
            "written unread before the switch stopped reading": wrote,
            "unmatched responses flooded": flooding.flooded,
            "switch RSS MiB before / during / after": f"{before:.0f} / {during:.0f} / {after:.0f}",
        }
    )
