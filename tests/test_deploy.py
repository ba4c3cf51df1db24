"""
The deploy service in process, on real loopback sockets: wiring by name in
any file order, broken files, and hot deploy under load.
"""

import textwrap

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.deploy import DeployService
from muxpool.errors import NoMUXAvailable
from muxpool.iso import sampleRequest
from muxpool.registry import Registry
from muxpool.testing import attachmentsOf, observersOf, runUntil, startLink
from tests.deployfiles import adaptor, freePort, front, issuer, member, pool, qmux
from tests.helpers import whenInFlight
from tests.logcapture import capturedText


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
        yield registry.getMUX(name).ready.whenState(True)
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
    adaptor, mux = startLink(reactor(), frontPort, spec=ASCII)
    try:
        yield adaptor.ready.whenState(True)
        outcomes = yield runLoad(mux, 200, 10)
        assert split(outcomes) == {"issuer-1": 100, "issuer-2": 100}
        assert service.failed == {}
    finally:
        yield adaptor.stopService()
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_missing_member_runs_with_rest_and_empty_pool_waits(tmp_path):
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1", "never-deployed"]))
    (tmp_path / "41_empty.xml").write_text(pool("empty", ["ghost-1", "ghost-2"]))
    (tmp_path / "42_broken.xml").write_text("<mux name='x'><in>")
    member(tmp_path, 1)
    with capturedText() as lines:
        service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        core = registry.getMUX("core-mux")
        assert [m.name for m in core.members] == ["core-mux-1"]
        empty = registry.getMUX("empty")
        assert empty.members == () and not empty.ready
        assert any(
            "pool empty: none of its <muxes> (ghost-1 ghost-2) is deployed; it stays deployed"
            in line
            for line in lines
        )
        assert (
            "42_broken.xml:1: <?>: malformed XML" in service.failed[str(tmp_path / "42_broken.xml")]
        )
        response = yield core.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
        assert response["44"] == "issuer-1"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_pool_whose_members_all_leave_stays_and_resumes(tmp_path):
    """
    A pool whose members are all undeployed stays deployed (empty, not
    ready) over any number of scans, and serves again when they come back.
    """
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    files = member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        core = registry.getMUX("core-mux")
        saved = {path: path.read_text() for path in files}
        for path in files:
            path.unlink()
        service.scan()
        service.scan()
        service.scan()
        assert registry.lookup("core-mux") is core and core.members == () and not core.ready
        assert service.failed == {}
        with pytest.raises(NoMUXAvailable):
            yield core.request({"t": "0200", "11": "000001", "41": "T1"}, 0.2)
        for path, text in saved.items():
            path.write_text(text)
        service.scan()
        yield core.ready.whenState(True)
        response = yield core.request({"t": "0200", "11": "000002", "41": "T1"}, 5)
        assert response["44"] == "issuer-1"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_renaming_a_descriptor_keeps_the_running_bean(tmp_path):
    """
    Renaming a descriptor (30_x.xml -> 31_x.xml) keeps the running bean:
    no "already deployed" failure, no undeploy.
    """
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        mux, core = registry.getMUX("core-mux-1"), registry.getMUX("core-mux")
        (tmp_path / "31_core-mux-1.xml").rename(tmp_path / "39_core-mux-1.xml")
        (tmp_path / "40_pool.xml").rename(tmp_path / "45_pool.xml")
        service.scan()
        assert registry.getMUX("core-mux-1") is mux and mux.running
        assert registry.getMUX("core-mux") is core and core.members == (mux,)
        assert service.failed == {}
        assert sorted(p.rsplit("/", 1)[1] for p in service.beans) == [
            "11_issuer-1.xml",
            "21_channel-1.xml",
            "39_core-mux-1.xml",
            "45_pool.xml",
        ]
        response = yield core.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
        assert response["39"] == "00"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_a_file_that_breaks_anything_is_named_and_scanning_goes_on(tmp_path, monkeypatch):
    """
    A SyntaxError in a user's strategy module does not stop the scan loop:
    it names the file, later files deploy, and the file is tried again when
    the module is fixed.
    """
    code = tmp_path / "code"
    code.mkdir()
    monkeypatch.syspath_prepend(str(code))
    (code / "broken_strategy_mod.py").write_text("def oops(:\n")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "40_pool.xml").write_text(
        "<mux class='org.jpos.q2.iso.MUXPool' name='core-mux'><muxes>core-mux-1</muxes>\n"
        "<strategy-handler class='broken_strategy_mod.Sticky'/></mux>"
    )
    member(deploy, 1)
    service = DeployService(str(deploy), reactor(), Registry(), scanInterval=0.05, drainTimeout=5)
    registry = service.registry
    with capturedText() as lines:
        service.startService()
    try:
        yield registry.getMUX("core-mux-1").ready.whenState(True)
        problem = service.failed[str(deploy / "40_pool.xml")]
        assert "40_pool.xml:2: <strategy-handler>" in problem
        assert "SyntaxError at " in problem and "broken_strategy_mod.py:1" in problem
        assert any("cannot deploy" in line and "40_pool.xml" in line for line in lines)
        assert service._loop.running
        (code / "broken_strategy_mod.py").write_text(
            textwrap.dedent("""
            from zope.interface import implementer
            from muxpool.interfaces import IStrategy

            @implementer(IStrategy)
            class Sticky:
                name = "sticky"
                def __init__(self, config):
                    pass
                def select(self, pool, message):
                    return pool.members[0]
        """)
        )
        core = yield registry.whenRegistered("core-mux")
        yield core.ready.whenState(True)
        response = yield core.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
        assert response["44"] == "issuer-1" and service.failed == {}
    finally:
        yield service.stopService()


def test_an_unexpected_error_in_one_file_does_not_stop_the_others(tmp_path):
    class Buggy(DeployService):
        def buildBean(self, path, root):
            if path.endswith("10_bad.xml"):
                raise ZeroDivisionError("a bug")
            return DeployService.buildBean(self, path, root)

    (tmp_path / "10_bad.xml").write_text(qmux("bad", "q"))
    (tmp_path / "20_good.xml").write_text(qmux("good", "q2"))
    from twisted.internet.testing import MemoryReactorClock

    service = Buggy(str(tmp_path), MemoryReactorClock(), Registry(), scanInterval=0)
    service.scan()
    assert "ZeroDivisionError" in service.failed[str(tmp_path / "10_bad.xml")]
    assert "good" in service.registry


@pytest_twisted.inlineCallbacks
def test_redeploys_leave_nothing_behind(tmp_path):
    """
    Redeploys leave nothing behind: after five, the replaced QMUXes and
    pools are stopped and collected.
    """
    import gc
    import weakref

    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        link = registry.get("channel-1")
        old = []
        for i in range(5):
            old.append((registry.getMUX("core-mux-1"), registry.getMUX("core-mux")))
            (tmp_path / "31_core-mux-1.xml").write_text(qmux("core-mux-1", "q1", f"<!-- {i} -->"))
            (tmp_path / "40_pool.xml").write_text(
                pool("core-mux", ["core-mux-1"]) + f"<!-- {i} -->"
            )
            service.scan()
            yield registry.getMUX("core-mux").ready.whenState(True)
            response = yield registry.getMUX("core-mux").request(
                {"t": "0200", "11": "%06d" % i, "41": "T1"}, 5
            )
            assert response["39"] == "00"
        yield defer.DeferredList(list(service._retiring))
        for mux, pooled in old:  # stopped: not ready, whatever their link is
            assert not mux.running and not mux.ready and not mux.isConnected()
            assert not pooled.running and not pooled.ready
        refs = [weakref.ref(service) for pair in old for service in pair]
        del old, mux, pooled
        gc.collect()
        assert [ref() for ref in refs] == [None] * 10
        assert attachmentsOf(link) == 2  # one receiver and one loss observer: the live QMUX's
        assert observersOf(link.ready) == 2  # its own (for the log) and the live QMUX's
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_broken_change_keeps_running_bean(tmp_path):
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    try:
        running = registry.getMUX("core-mux")
        (tmp_path / "40_pool.xml").write_text(
            "<mux class='org.jpos.q2.iso.MUXPool' name='core-mux'>"
            "<muxes>core-mux-1</muxes><strategy>nope</strategy></mux>"
        )
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
    (tmp_path / "40_pool.xml").write_text(
        pool("core-mux", ["core-mux-1", "core-mux-2", "core-mux-3"])
    )
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
            (tmp_path / "32_core-mux-2.xml").write_text(
                qmux("core-mux-2", "q2", "\n  <key>41 11</key>")
            )
            port2 = open(tmp_path / "12_issuer-2.xml").read().split('Integer">')[1].split("<")[0]
            (tmp_path / "22_channel-2.xml").write_text(
                adaptor("channel-2", port2, "q2", "\n  <keep-alive>no</keep-alive>")
            )
            steps["old2"] = registry.getMUX("core-mux-2")
            service.scan()

    try:
        yield core.ready.whenState(True)
        outcomes = yield runLoad(core, 2500, 20, timeout=10, onEach=onEach)
        assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes), [
            o for o in outcomes if not isinstance(o, dict)
        ][:3]
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
    client, mux = startLink(reactor(), frontPort, spec=ASCII)
    try:
        yield client.ready.whenState(True)
        pending = [mux.request(sampleRequest(i), 10) for i in range(10)]
        yield whenInFlight(registry.get("issuer-1"), 10)
        yield service.stopService()
        results = yield defer.gatherResults(pending)
        assert [r["39"] for r in results] == ["00"] * 10
        assert registry.names() == []
    finally:
        yield client.stopService()


def test_deploy_time_warnings(tmp_path):
    """
    A Forward naming a MUX that does not exist is a warning when deployed
    (with file and line), and so is an empty folder; each once.
    """
    from twisted.internet.testing import MemoryReactorClock

    empty = tmp_path / "empty"
    empty.mkdir()
    with capturedText() as lines:
        service = DeployService(str(empty), MemoryReactorClock(), Registry(), scanInterval=0)
        service.scan()
        service.scan()
    assert sum("has no *.xml descriptors" in line for line in lines) == 1
    (tmp_path / "50_front.xml").write_text(front("front", freePort(), "core-mux-typo"))
    with capturedText() as lines:
        service = DeployService(str(tmp_path), MemoryReactorClock(), Registry(), scanInterval=0)
        service.scan()
        service.scan()
    found = [line.split("\n")[0] for line in lines if "core-mux-typo" in line.split("\n")[0]]
    assert len(found) == 1, found
    assert (
        "50_front.xml: front: MUX 'core-mux-typo' is not deployed; requests are declined "
        "39=91 until it is (50_front.xml:4 <request-listener>)" in found[0]
    )


@pytest_twisted.inlineCallbacks
def test_a_server_whose_port_is_taken_retries_until_free(tmp_path):
    """
    A server whose port is in use logs why once (no traceback) and retries
    with a growing delay until it can listen, without its file being touched.
    """
    import socket

    from muxpool.link import QServer

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    server = QServer("front", ASCII, f"tcp:{port}:interface=127.0.0.1", reactor())
    server.clock = clock = Clock()  # retries on a fake clock; TCP listens at once
    with capturedText() as lines:
        server.startService()
        try:
            listening = server.whenListening()
            runUntil(clock, 60)  # 1, 2, 4, 8, 16, 30, 30 s: several failed attempts
            assert not listening.called and server.lastFailure
            assert clock.getDelayedCalls()[0].getTime() - clock.seconds() <= 30
            blocker.close()
            runUntil(clock, 120)
            yield listening
        finally:
            blocker.close()
            yield server.stopService()
    failures = [line for line in lines if "cannot listen" in line.split("\n")[0]]
    assert len(failures) == 1 and "Traceback" not in "\n".join(lines)
    assert "Address already in use" in failures[0]
    assert any(f"listening on 127.0.0.1:{port} (after" in line for line in lines)


@pytest_twisted.inlineCallbacks
def test_a_deploy_service_started_again_deploys_everything_again(tmp_path):
    # Stopped and started, it takes no file for unchanged: everything is
    # deployed again.
    (tmp_path / "40_pool.xml").write_text(pool("core-mux", ["core-mux-1"]))
    member(tmp_path, 1)
    service, registry = yield deployed(tmp_path, ["core-mux-1"])
    yield service.stopService()
    assert service.beans == {} and registry.lookup("core-mux") is None
    service.startService()
    try:
        yield registry.getMUX("core-mux-1").ready.whenState(True)
        response = yield registry.getMUX("core-mux").request(
            {"t": "0200", "11": "000001", "41": "T1"}, 5
        )
        assert response["44"] == "issuer-1"
    finally:
        yield service.stopService()


def test_a_folder_that_cannot_be_read_changes_nothing(tmp_path):
    """
    A scan that cannot read the deploy folder (no file descriptor left, or
    the folder gone) undeploys nothing and says so once, not once a scan;
    when it can be read again, scanning goes on as before.
    """
    from twisted.internet.testing import MemoryReactorClock

    (tmp_path / "10_good.xml").write_text(qmux("good", "q"))
    service = DeployService(str(tmp_path), MemoryReactorClock(), Registry(), scanInterval=0)
    service.startService()
    try:
        assert "good" in service.registry
        hidden = tmp_path.parent / (tmp_path.name + "-away")
        tmp_path.rename(hidden)  # os.scandir fails, as it does with EMFILE
        with capturedText() as lines:
            service.scan()
            service.scan()
        assert [b.name for b in service.beans.values()] == ["good"]
        assert "good" in service.registry and service.registry.get("good").running
        unreadable = [line for line in lines if "cannot read deploy folder" in line]
        assert len(unreadable) == 1 and "nothing is changed" in unreadable[0]
        hidden.rename(tmp_path)
        (tmp_path / "20_more.xml").write_text(qmux("more", "q2"))
        service.scan()
        assert sorted(b.name for b in service.beans.values()) == ["good", "more"]
    finally:
        service.stopService()


def test_a_replacement_never_ready_does_not_hold_up_a_stop(tmp_path):
    """
    An adaptor whose file changed to an issuer that never answers keeps
    the old link for its QMUX until the new one is ready; a stop meanwhile
    does not wait for that (nor for the drain timeout): with nothing in
    flight, it ends at once.
    """
    from twisted.internet.testing import MemoryReactorClock

    reactor = MemoryReactorClock()
    (tmp_path / "20_channel.xml").write_text(adaptor("channel-1", 9001, "q1"))
    (tmp_path / "21_mux.xml").write_text(qmux("mux-1", "q1"))
    service = DeployService(str(tmp_path), reactor, Registry(), scanInterval=0, drainTimeout=30)
    service.startService()
    old = service.registry.get("channel-1")
    (tmp_path / "20_channel.xml").write_text(adaptor("channel-1", 9002, "q1"))
    service.scan()
    assert service.registry.get("channel-1") is not old and old.running  # kept meanwhile
    stopped = []
    service.stopService().addCallback(stopped.append)
    reactor.advance(0)
    assert stopped and not old.running
