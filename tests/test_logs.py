"""
Logs for operations: one structured event (an `event` field) per connect,
disconnect (with its reason), ready change, sign-on, echo failure, enable /
disable / drain, deploy / undeploy and failed outcome, as JSON lines for a
log shipper, card data masked.
"""

import io
import json

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher, jsonFileLogObserver

from muxpool.deploy import DeployService
from muxpool.logs import jsonLines
from muxpool.ops import Operations
from muxpool.registry import Registry
from muxpool.testing import PoolHarness, runUntil
from tests.deployfiles import qmux
from tests.test_adaptor import makeAdaptor, peerMessages, reply


class Events:
    """
    Every event published while in use, as the JSON a shipper would get.
    """

    def __enter__(self):
        self.out = io.StringIO()
        self.observer = jsonFileLogObserver(self.out, recordSeparator="")
        globalLogPublisher.addObserver(self.observer)
        return self

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self.observer)

    @property
    def records(self):
        return [json.loads(line) for line in self.out.getvalue().splitlines() if line]

    def named(self, event):
        return [r for r in self.records if r.get("event") == event]


def test_link_events():
    with Events() as events:
        adaptor, endpoint, clock = makeAdaptor(signOn=True, echoInterval=30, echoTimeout=5)
        protocol = endpoint.protocols[0]
        [signOn] = peerMessages(protocol)
        reply(protocol, signOn)
        runUntil(clock, 36)  # an echo at 30, unanswered by 35
    for name in (
        "link.connected",
        "link.signed_on",
        "link.ready",
        "link.not_ready",
        "link.echo_failure",
        "link.disconnected",
    ):
        assert events.named(name), name
    [lost] = events.named("link.disconnected")
    assert lost["link"] == "link" and lost["reason"]


def test_operator_and_outcome_events():
    harness = PoolHarness(2, strategy="round-robin")
    registry = Registry()
    for member in harness.members + [harness.pool]:
        registry.register(member.name, member)
    operations = Operations(registry, harness.clock)
    with Events() as events:
        operations.disable(harness.members[0].name)
        operations.drain(harness.members[0].name, 5)
        operations.enable(harness.members[0].name)
        for issuer in harness.issuers:
            issuer.when(lambda m: m.get("t") == "0200").never()
        pending = harness.request(timeout=1, fields={"2": "4761739001010119"})  # a PAN
        harness.advance(1)
        pending.addErrback(lambda failure: None)
    for name in (
        "mux.disabled",
        "mux.draining",
        "mux.drained",
        "mux.enabled",
        "pool.member_disabled",
        "pool.member_enabled",
        "request.outcome_unknown",
    ):
        assert events.named(name), name
    assert "4761739001010119" not in events.out.getvalue()
    harness.stop()


def test_deploy_events(tmp_path):
    (tmp_path / "10_mux.xml").write_text(qmux("mux", "q"))
    (tmp_path / "20_bad.xml").write_text("<mux name='x'>")
    with Events() as events:
        service = DeployService(str(tmp_path), MemoryReactorClock(), Registry(), scanInterval=0)
        service.scan()
        (tmp_path / "10_mux.xml").unlink()
        service.scan()
    assert events.named("deploy.deployed")[0]["name"] == "mux"
    assert events.named("deploy.undeployed")[0]["name"] == "mux"
    assert events.named("deploy.failed")[0]["path"].endswith("20_bad.xml")


def test_json_lines_for_twistd(capsys):
    observer = jsonLines()
    observer(
        {
            "log_format": "{link}: ready",
            "link": "a",
            "event": "link.ready",
            "log_level": None,
            "log_namespace": "x",
        }
    )
    line = capsys.readouterr().out
    assert line.endswith("\n") and json.loads(line)["event"] == "link.ready"
