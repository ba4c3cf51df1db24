"""
The deploy service in process, on real loopback sockets: wiring by name in
any file order, broken files, and hot deploy under load.
"""

import pytest_twisted
from twisted.internet import defer

from muxpool.channel import ChannelSpec
from muxpool.deploy import DeployService
from muxpool.registry import Registry
from tests.deployfiles import adaptor, freePort, front, issuer, member, pool, qmux
from tests.netutil import message, runLoad, startClient, whenInFlight, whenState


def reactor():
    from twisted.internet import reactor

    return reactor


ASCII = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")


@defer.inlineCallbacks
def deployed(directory, names=("core-mux-1", "core-mux-2")):
    """
    Deploy C{directory}; wait until the named MUXes are ready.
    """
    registry = Registry()
    service = DeployService(str(directory), reactor(), registry, scanInterval=0, drainTimeout=5)
    service.startService()
    for name in names:
        yield whenState(registry.getMUX(name).ready, True)
    return service, registry


def split(outcomes):
    counts = {}
    for o in outcomes:
        if isinstance(o, dict):
            counts[o.get("44")] = counts.get(o.get("44"), 0) + 1
    return counts


@pytest_twisted.inlineCallbacks
def test_wiring_by_name_in_any_file_order(tmp_path):
    # the pool and the front come first in file order; members after
    (tmp_path / "00_core-mux.xml").write_text(pool("core-mux", ["core-mux-1", "core-mux-2"]))
    frontPort = freePort()
    (tmp_path / "01_front.xml").write_text(front("front", frontPort, "core-mux"))
    member(tmp_path, 1)
    member(tmp_path, 2)
    service, registry = yield deployed(tmp_path)
    adaptor, mux = startClient(reactor(), frontPort, spec=ASCII)
    try:
        yield whenState(adaptor.ready, True)
        outcomes = yield runLoad(mux, 200, 10)
        assert split(outcomes) == {"issuer-1": 100, "issuer-2": 100}
        assert service.failed == {}
    finally:
        yield adaptor.stopService()
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_missing_member_runs_with_rest_and_empty_pool_fails(tmp_path):
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1", "never-deployed"]))
    (tmp_path / "41_empty.xml").write_text(pool("empty", ["ghost-1", "ghost-2"]))
    (tmp_path / "42_broken.xml").write_text("<mux name='x'><in>")
    member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        core = registry.getMUX("core-mux")
        assert [m.name for m in core.members] == ["core-mux-1"]
        assert "empty" not in registry
        assert "none of its <muxes> (ghost-1 ghost-2) is deployed" in service.failed[str(tmp_path / "41_empty.xml")]
        assert "42_broken.xml:1: <?>: malformed XML" in service.failed[str(tmp_path / "42_broken.xml")]
        response = yield core.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
        assert response["44"] == "issuer-1"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_broken_change_keeps_running_bean(tmp_path):
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        running = registry.getMUX("core-mux")
        (tmp_path / "40_pool.xml").write_text("<mux class='org.jpos.q2.iso.MUXPool' name='core-mux'>"
                                              "<muxes>core-mux-1</muxes><strategy>nope</strategy></mux>")
        service.scan()
        assert registry.getMUX("core-mux") is running
        assert "unknown strategy 'nope'" in service.failed[str(tmp_path / "40_pool.xml")]
        response = yield running.request({"t": "0200", "11": "000002", "41": "T1"}, 5)
        assert response["39"] == "00"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_hot_deploy_under_load_loses_nothing(tmp_path):
    """
    Add a third member, then remove the first, then redeploy the second's
    QMUX and adaptor, all while requests flow: every request is answered.
    """
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1", "core-mux-2", "core-mux-3"]))
    first = member(tmp_path, 1)
    member(tmp_path, 2)
    service, registry = yield deployed(tmp_path)
    core = registry.getMUX("core-mux")
    assert len(core.members) == 2
    steps = {}

    def onEach(i, result):
        if i == 300:
            member(tmp_path, 3)
            service.scan()
        elif i == 900:
            assert [m.name for m in core.members][-1] == "core-mux-3"
            for path in first:
                path.unlink()
            service.scan()
        elif i == 1400:
            (tmp_path / "32_core-mux-2.xml").write_text(qmux("core-mux-2", "q2", "\n  <key>41 11</key>"))
            port2 = open(tmp_path / "12_issuer-2.xml").read().split("Integer\">")[1].split("<")[0]
            (tmp_path / "22_channel-2.xml").write_text(adaptor("channel-2", port2, "q2", "\n  <keep-alive>no</keep-alive>"))
            steps["old2"] = registry.getMUX("core-mux-2")
            service.scan()

    try:
        yield whenState(core.ready, True)
        outcomes = yield runLoad(core, 2500, 20, timeout=10, onEach=onEach)
        assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes), [
            o for o in outcomes if not isinstance(o, dict)][:3]
        counts = split(outcomes[1100:])
        assert "issuer-1" not in counts and counts.get("issuer-3", 0) > 0
        assert registry.getMUX("core-mux-2") is not steps["old2"]
        assert [m.name for m in core.members] == ["core-mux-2", "core-mux-3"]
        assert "core-mux-1" not in registry and "issuer-1" not in registry
        assert service.failed == {}
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_shutdown_drains_in_flight_requests(tmp_path):
    """
    Stopping the deploy service (SIGTERM in twistd) undeploys in reverse
    file order: requests in flight through the front server are answered
    before the links under them close.
    """
    issuerPort, frontPort = freePort(), freePort()
    (tmp_path / "10_issuer.xml").write_text(issuer("issuer-1", issuerPort, "issuer-1", delay=300))
    (tmp_path / "20_channel.xml").write_text(adaptor("channel-1", issuerPort, "q1"))
    (tmp_path / "30_core-mux-1.xml").write_text(qmux("core-mux-1", "q1"))
    (tmp_path / "40_front.xml").write_text(front("front", frontPort, "core-mux-1"))
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    client, mux = startClient(reactor(), frontPort, spec=ASCII)
    try:
        yield whenState(client.ready, True)
        pending = [mux.request(message(i), 10) for i in range(10)]
        yield whenInFlight(registry.get("issuer-1"), 10)
        yield service.stopService()
        results = yield defer.gatherResults(pending)
        assert [r["39"] for r in results] == ["00"] * 10
        assert registry.names() == []
    finally:
        yield client.stopService()
