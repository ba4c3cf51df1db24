"""
Links over real TLS on loopback, with certificates made at run time
(trustme): mutual TLS configured with PEM files, as a descriptor does, and
every way a peer without a valid certificate is refused, with the reason.
"""

import pytest
import pytest_twisted
import trustme
from twisted.internet import defer

from muxpool.app import runLoad
from muxpool.channel import ClientTLS, ServerTLS, TLSConfigError
from muxpool.errors import LinkNotReady
from muxpool.link import AdaptorSettings, ChannelAdaptor, QServer, ServerSettings
from muxpool.listeners import Responder
from muxpool.mux import QMUX, MUXPool, strategyByName
from muxpool.testing import defaultSpec as spec
from tests.logcapture import capturedText


def reactor():
    from twisted.internet import reactor

    return reactor


class PKI:
    """
    A CA and the PEM files a test needs, written under a folder.
    """

    def __init__(self, folder, name="ca"):
        self.folder = folder
        self.ca = trustme.CA(organization_name=name)
        self.caFile = self.write(f"{name}.pem", self.ca.cert_pem)

    def write(self, name, blob):
        path = self.folder / name
        blob.write_to_path(str(path))
        return str(path)

    def issue(self, name, *identities):
        """
        A certificate for C{identities} (CN C{name}) and its key, in one file.
        """
        cert = self.ca.issue_cert(*(identities or (name,)), common_name=name)
        return self.write(f"{name}.pem", cert.private_key_and_cert_chain_pem)


@pytest.fixture
def pki(tmp_path):
    return PKI(tmp_path)


@defer.inlineCallbacks
def tlsServer(pki, name="issuer", clientCA=True, subjects=(), mark=None, **settings):
    tls = ServerTLS(
        pki.issue(name, "localhost"), None, pki.caFile if clientCA else None, tuple(subjects)
    )
    server = QServer(
        name,
        spec(),
        "tcp:0:interface=127.0.0.1",
        reactor(),
        ServerSettings(gracePeriod=0, tls=tls, **settings),
        listeners=[Responder(fixed={"44": mark or name})],
    )
    server.startService()
    port = yield server.whenListening()
    return server, port.getHost().port


def tlsLink(port, name, tls):
    adaptor = ChannelAdaptor(
        name,
        spec(),
        f"tcp:127.0.0.1:{port}",
        reactor(),
        AdaptorSettings(reconnectDelay=0.2, maxReconnectDelay=0.5, tls=tls),
    )
    mux = QMUX(f"{name}-mux", adaptor, reactor())
    adaptor.startService()
    mux.startService()
    return adaptor, mux


@defer.inlineCallbacks
def stop(*services):
    for service in services:
        yield service.stopService()


@defer.inlineCallbacks
def refused(adaptor, count=2):
    """
    Wait until C{adaptor} lost C{count} connections, and say why it was
    told (each must have been a TLS failure).
    """
    lost = defer.Deferred()
    seen = []

    def observer(reason):
        seen.append(reason)
        if len(seen) == count and not lost.called:
            lost.callback(None)

    adaptor.addLossObserver(observer)
    yield lost
    adaptor.removeLossObserver(observer)
    assert adaptor.counters["connect_failures"] >= count
    return adaptor.lastFailure


@pytest_twisted.inlineCallbacks
def test_a_handshake_that_never_ends_is_one_failure_with_its_reason():
    # A handshake timeout counts as one failure (the backoff grows once),
    # reported as the timeout it is, not as "connection aborted".
    from twisted.internet.protocol import Factory, Protocol

    silent = reactor().listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    adaptor = ChannelAdaptor(
        "link",
        spec(),
        f"tcp:127.0.0.1:{silent.getHost().port}",
        reactor(),
        AdaptorSettings(
            reconnectDelay=0.1,
            maxReconnectDelay=0.1,
            connectTimeout=0.3,
            tls=ClientTLS("localhost", None),
        ),
    )
    adaptor.startService()
    try:
        why = yield refused(adaptor)
    finally:
        yield adaptor.stopService()
        yield silent.stopListening()
    assert why.startswith("TLS handshake with tcp:127.0.0.1") and "not done in 0.3s" in why, why
    # each connection given up counts once
    assert adaptor.counters["connect_failures"] == adaptor.counters["disconnects"]


@pytest_twisted.inlineCallbacks
def test_a_pool_over_two_mutual_tls_backends(pki):
    servers, links = [], []
    for name in ("issuer-a", "issuer-b"):
        server, port = yield tlsServer(pki, name)
        servers.append(server)
        links.append(
            tlsLink(
                port,
                f"link-{name}",
                ClientTLS("localhost", pki.caFile, pki.issue(f"switch-{name}")),
            )
        )
    pool = MUXPool("pool", [mux for _, mux in links], reactor(), strategyByName("round-robin"))
    pool.startService()
    try:
        for adaptor, _ in links:
            yield adaptor.ready.whenState(True)
            assert adaptor.protocol.secured
        outcomes = yield runLoad(pool, 400, 16)
        assert sorted(o["44"] for o in outcomes) == ["issuer-a"] * 200 + ["issuer-b"] * 200
    finally:
        yield stop(pool, *[s for pair in links for s in reversed(pair)], *servers)


@pytest_twisted.inlineCallbacks
def test_a_client_without_a_certificate_from_the_ca_is_refused_and_logged(pki, tmp_path):
    stranger = PKI(tmp_path, "stranger-ca")
    server, port = yield tlsServer(pki)
    anonymous = tlsLink(port, "anonymous", ClientTLS("localhost", pki.caFile))
    foreign = tlsLink(
        port, "foreign", ClientTLS("localhost", pki.caFile, stranger.issue("acquirer"))
    )
    with capturedText() as lines:
        try:
            for adaptor, _ in (anonymous, foreign):
                assert "TLS with tcp:127.0.0.1" in (yield refused(adaptor))
        finally:
            yield stop(*reversed(anonymous), *reversed(foreign), server)
    reasons = [line.split("\n")[0] for line in lines if "issuer: refused 127.0.0.1" in line]
    # each refusal, of either client, logged with OpenSSL's reason
    assert len(reasons) >= 2 and all("TLS: " in r and "certificate" in r for r in reasons), reasons
    assert server.counters["tls_refused"] >= 2 and server.counters["rx"] == 0


@pytest_twisted.inlineCallbacks
def test_pinned_subjects(pki):
    server, port = yield tlsServer(pki, subjects=("switch-1",))
    good = tlsLink(port, "good", ClientTLS("localhost", pki.caFile, pki.issue("switch-1")))
    other = tlsLink(port, "other", ClientTLS("localhost", pki.caFile, pki.issue("switch-2")))
    states = []
    other[0].ready.addObserver(states.append)
    with capturedText() as lines:
        try:
            yield good[0].ready.whenState(True)
            response = yield good[1].request({"t": "0200", "11": "000001", "41": "T1"}, 5)
            assert response["39"] == "00"
            # refused within the handshake, as a certificate from another CA
            # is: the other link is never ready
            why = yield refused(other[0], 3)
        finally:
            yield stop(*reversed(good), *reversed(other), server)
    assert states == [] and "TLS with tcp:127.0.0.1" in why, (states, why)
    assert any("TLS client subject CN=switch-2 is not allowed" in line for line in lines)


@pytest_twisted.inlineCallbacks
def test_a_refused_client_certificate_is_a_failed_connection_never_ready(pki, tmp_path):
    # With TLS 1.3 the client's handshake is done before the server checks
    # the client's certificate: the refusal comes as an alert just after.
    # The link is never ready, no request is written on it, each refusal
    # is a failure with its reason, and the reconnect delay grows.
    stranger = PKI(tmp_path, "stranger-ca")
    server, port = yield tlsServer(pki)
    adaptor = ChannelAdaptor(
        "link",
        spec(),
        f"tcp:127.0.0.1:{port}",
        reactor(),
        AdaptorSettings(
            reconnectDelay=0.02,
            maxReconnectDelay=5,
            tls=ClientTLS("localhost", pki.caFile, stranger.issue("acquirer")),
        ),
    )
    mux = QMUX("mux", adaptor, reactor())
    states = []
    adaptor.ready.addObserver(states.append)
    adaptor.startService()
    mux.startService()
    try:
        why = yield refused(adaptor, 7)
        with pytest.raises(LinkNotReady):
            yield mux.request({"t": "0200", "11": "000001", "41": "T1"}, 1)
    finally:
        yield stop(mux, adaptor, server)
    assert states == [], states
    assert "TLS with tcp:127.0.0.1" in why and "TLS: " in why, why
    assert adaptor.counters["connects"] >= 7
    assert adaptor._retryDelay(1) > 0.02  # failures that persist grow the delay
    assert server.counters["rx"] == 0 and server.counters["tls_refused"] >= 7


@pytest.mark.parametrize("case", ["unknown CA", "another host"])
@pytest_twisted.inlineCallbacks
def test_the_adaptor_refuses_an_issuer_it_cannot_verify(pki, tmp_path, case):
    if case == "unknown CA":
        server, port = yield tlsServer(PKI(tmp_path, "rogue-ca"), clientCA=False)
        tls = ClientTLS("localhost", pki.caFile)
    else:
        server, port = yield tlsServer(pki, clientCA=False)
        tls = ClientTLS("issuer.example.com", pki.caFile)
    link = tlsLink(port, "link", tls)
    try:
        why = yield refused(link[0])
    finally:
        yield stop(*reversed(link), server)
    assert why.startswith("TLS with tcp:127.0.0.1"), why
    if case == "unknown CA":
        assert "certificate verify failed" in why, why
    else:
        assert "issuer.example.com" in why, why
    assert server.counters["rx"] == 0


def test_tls_files_are_checked_when_configured(tmp_path, pki):
    with pytest.raises(TLSConfigError, match="tls-ca .*missing.pem.*cannot read"):
        ClientTLS("localhost", str(tmp_path / "missing.pem")).options()
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match="tls-cert .*junk.pem.*not a PEM certificate"):
        ServerTLS(str(tmp_path / "junk.pem")).options()
    with pytest.raises(TLSConfigError, match="tls-client-subjects needs tls-client-ca"):
        ServerTLS.fromProperties({"tls-cert": "x", "tls-client-subjects": "a"})


def test_descriptors_configure_mutual_tls_with_pem_files(tmp_path, pki):
    from twisted.internet.testing import MemoryReactorClock

    from muxpool.deploy import buildBean, readDescriptor
    from muxpool.registry import Registry

    pki.issue("switch")
    pki.issue("issuer", "localhost")
    (tmp_path / "a.xml").write_text("""<channel-adaptor name="a">
      <channel class="NACChannel" packager="ISO87B">
        <property name="host" value="127.0.0.1"/><property name="port" value="9000"/>
        <property name="tls-ca" value="ca.pem"/>
        <property name="tls-cert" value="switch.pem"/>
        <property name="tls-hostname" value="localhost"/>
      </channel><in>x</in><out>y</out></channel-adaptor>""")
    (tmp_path / "s.xml").write_text("""<server name="s"><attr name="port">0</attr>
      <channel class="NACChannel" packager="ISO87B"/>
      <property name="tls-cert" value="issuer.pem"/>
      <property name="tls-client-ca" value="ca.pem"/>
      <property name="tls-client-subjects" value="switch, other"/></server>""")
    beans = [
        buildBean(
            str(tmp_path / f),
            readDescriptor(str(tmp_path / f), {}),
            MemoryReactorClock(),
            Registry(),
        )
        for f in ("a.xml", "s.xml")
    ]
    adaptor, server = (b.service for b in beans)
    assert adaptor.settings.tls == ClientTLS(
        "localhost", str(tmp_path / "ca.pem"), str(tmp_path / "switch.pem"), None
    )
    assert (
        server.settings.tls.clientSubjects == ("switch", "other") and server.tlsOptions is not None
    )


@pytest_twisted.inlineCallbacks
def test_stopping_a_tls_server_with_idle_sessions_does_not_wait_for_a_flush(pki):
    """
    A planned stop of a TLS server with idle sessions does not wait for a
    flush: the session's producer is unregistered, so the stop is quick and
    nothing says the client "did not read its last answers".
    """
    server, port = yield tlsServer(pki, flushTimeout=60.0)
    adaptor, mux = tlsLink(port, "idle", ClientTLS("localhost", pki.caFile, pki.issue("switch")))
    try:
        yield adaptor.ready.whenState(True)
        answer = yield mux.request({"t": "0800", "11": "000001", "70": "301"}, 5)
        assert answer["39"] == "00"
        with capturedText() as lines:
            stopped = server.stopService()
            # Far below the flush timeout: the stop does not wait for it.
            stopped.addTimeout(10, reactor())
            yield stopped
    finally:
        yield stop(mux, adaptor, server)
    assert not [line for line in lines if "did not read" in line], lines


def test_tls_without_pyopenssl_says_what_to_install(tmp_path, monkeypatch):
    """
    Where pyOpenSSL is not installed, a TLS descriptor fails with an error
    naming the file and the fix (pip install 'muxpool[tls]'), not a
    traceback.
    """
    import sys

    from twisted.internet.testing import MemoryReactorClock

    from muxpool.deploy import DescriptorError, buildBean, readDescriptor
    from muxpool.registry import Registry

    monkeypatch.setitem(sys.modules, "OpenSSL", None)  # import OpenSSL fails
    monkeypatch.delitem(sys.modules, "twisted.internet.ssl", raising=False)
    path = tmp_path / "a.xml"
    path.write_text(
        '<channel-adaptor name="a"><channel class="NACChannel" packager="ISO87B">'
        '<property name="host" value="localhost"/><property name="port" value="9"/>'
        '<property name="tls" value="true"/></channel></channel-adaptor>'
    )
    with pytest.raises(
        DescriptorError, match=r"a.xml:1: <channel>: TLS needs pyOpenSSL.*muxpool\[tls\]"
    ):
        buildBean(str(path), readDescriptor(str(path), {}), MemoryReactorClock(), Registry())
