"""
A link over real TLS on loopback: QServer on an `ssl:` endpoint, the
adaptor on a `tls:` endpoint that verifies the server's certificate.
"""

import datetime
import ipaddress

import pytest_twisted



def selfSigned(directory):
    """
    A key and a certificate for 127.0.0.1, written as PEM files.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyPath, certPath = directory / "key.pem", directory / "cert.pem"
    keyPath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    certPath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    roots = directory / "roots"
    roots.mkdir()
    (roots / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return keyPath, certPath, roots


@pytest_twisted.inlineCallbacks
def test_requests_over_tls(tmp_path):
    from twisted.internet import reactor

    from muxpool.adaptor import ChannelAdaptor
    from muxpool.listeners import Responder
    from muxpool.loadgen import runLoad
    from muxpool.mux import QMUX
    from muxpool.server import QServer
    from muxpool.testing import defaultSpec

    keyPath, certPath, roots = selfSigned(tmp_path)
    server = QServer("tls-server", defaultSpec(),
                     f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}",
                     reactor, listeners=[Responder()])
    server.startService()
    port = (yield server.whenListening()).getHost().port
    adaptor = ChannelAdaptor("tls-link", defaultSpec(), f"tls:127.0.0.1:{port}:trustRoots={roots}",
                             reactor, reconnectDelay=0.1)
    mux = QMUX("tls-mux", adaptor, reactor)
    adaptor.startService()
    mux.startService()
    try:
        yield adaptor.ready.whenState(True)
        outcomes = yield runLoad(mux, 500, 20)
        assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
        assert adaptor.protocol.transport.getPeerCertificate() is not None
    finally:
        yield adaptor.stopService()
        yield server.stopService()
