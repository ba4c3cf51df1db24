"""
TLS for links, configured with PEM files (not Java keystores).

A channel adaptor verifies its issuer against a CA file and the host name
and may present its own certificate; a server presents its certificate and
may require clients' certificates signed by a CA, and pin their subjects.
TLS is added to each connection by the link itself (L{wrapTLS}), so the link
knows when the handshake is done: an adaptor is ready only then, and a
server checks a client's subject then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Tuple, Union
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol

from muxpool._config import yesNo

if TYPE_CHECKING:  # twisted.internet.ssl needs pyOpenSSL, imported only when TLS is used
    from twisted.internet.interfaces import (
        IDelayedCall,
        IOpenSSLClientConnectionCreator,
        IOpenSSLContextFactory,
        IReactorTime,
    )
    from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
    from twisted.python.failure import Failure

#: Descriptor properties, on an adaptor's <channel> and on a <server>.
CLIENT_PROPERTIES = frozenset({"tls", "tls-ca", "tls-cert", "tls-key", "tls-hostname"})
SERVER_PROPERTIES = frozenset({"tls-cert", "tls-key", "tls-client-ca", "tls-client-subjects"})


class TLSConfigError(ValueError):
    """
    A TLS file that cannot be used: names the file and the problem.
    """


def _needTLS() -> None:
    """
    @raise TLSConfigError: TLS cannot be used here (pyOpenSSL, which
        Twisted's TLS needs, is not installed), saying how to install it.
    """
    try:
        import twisted.internet.ssl  # noqa: F401  (it imports pyOpenSSL)
    except ImportError as e:
        raise TLSConfigError(
            f"TLS needs pyOpenSSL, which is not installed ({e}): pip install 'muxpool[tls]'"
        ) from None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"{what} {path!r}: cannot read: {e.strerror}") from None


def _certificate(path: str, what: str) -> Certificate:
    from twisted.internet.ssl import Certificate

    try:
        return Certificate.loadPEM(_read(path, what))
    except TLSConfigError:
        raise
    except Exception as e:
        raise TLSConfigError(
            f"{what} {path!r}: not a PEM certificate ({type(e).__name__})"
        ) from None


def _privateCertificate(certPath: str, keyPath: Optional[str]) -> PrivateCertificate:
    from twisted.internet.ssl import PrivateCertificate

    pem = _read(certPath, "tls-cert")
    if keyPath:
        pem += b"\n" + _read(keyPath, "tls-key")
    try:
        return PrivateCertificate.loadPEM(pem)
    except Exception as e:
        raise TLSConfigError(
            f"tls-cert {certPath!r}{f' with tls-key {keyPath!r}' if keyPath else ''}: not a PEM "
            f"certificate and private key ({type(e).__name__})"
        ) from None


@dataclass(frozen=True)
class ClientTLS:
    """
    How an adaptor speaks TLS: verify the peer against C{caFile} (the
    platform's trust store if None) and C{hostname}; present C{certFile}
    (+ C{keyFile}) if given.
    """

    hostname: str
    caFile: Optional[str] = None
    certFile: Optional[str] = None
    keyFile: Optional[str] = None

    def options(self) -> IOpenSSLClientConnectionCreator:
        """
        @raise TLSConfigError: naming the file at fault, or what to install.
        """
        _needTLS()
        from twisted.internet.ssl import optionsForClientTLS, platformTrust

        trust = _certificate(self.caFile, "tls-ca") if self.caFile else platformTrust()
        client = _privateCertificate(self.certFile, self.keyFile) if self.certFile else None
        return optionsForClientTLS(self.hostname, trustRoot=trust, clientCertificate=client)

    @classmethod
    def fromProperties(cls, props: Mapping[str, str], host: Optional[str]) -> Optional["ClientTLS"]:
        """
        From an adaptor's channel properties; None if they ask for no TLS.
        """
        wanted = yesNo(props.get("tls"), False) or any(
            k in props for k in CLIENT_PROPERTIES - {"tls", "tls-hostname"}
        )
        if not wanted:
            return None
        hostname = props.get("tls-hostname") or host
        if not hostname:
            raise TLSConfigError("TLS needs a host name to verify: a host or tls-hostname property")
        return cls(hostname, props.get("tls-ca"), props.get("tls-cert"), props.get("tls-key"))


@dataclass(frozen=True)
class ServerTLS:
    """
    How a server speaks TLS: present C{certFile} (+ C{keyFile}); with
    C{clientCAFile}, require each client's certificate to be signed by it,
    and with C{clientSubjects}, its common name to be one of them.
    """

    certFile: str
    keyFile: Optional[str] = None
    clientCAFile: Optional[str] = None
    clientSubjects: Tuple[str, ...] = field(default=())

    def options(self) -> CertificateOptions:
        """
        @raise TLSConfigError: naming the file at fault, or what to install.
        """
        _needTLS()
        certificate = _privateCertificate(self.certFile, self.keyFile)
        if not self.clientCAFile:
            return certificate.options()
        options = certificate.options(_certificate(self.clientCAFile, "tls-client-ca"))
        if self.clientSubjects:
            self._pinSubjects(options.getContext())
        return options

    def _pinSubjects(self, context: Any) -> None:
        """
        Refuse a client whose certificate's common name is not pinned
        within the handshake (an alert, as for any refused certificate), so
        a TLS 1.3 client never takes the session as accepted.  The reason
        is kept for the server's log (L{refusalOf}).
        """
        from OpenSSL import SSL

        def verify(connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok or depth > 0:
                return bool(ok)
            subject = certificate.get_subject().commonName
            if subject in self.clientSubjects:
                return True
            _refusals[connection] = f"TLS client subject CN={subject} is not allowed"
            return False

        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)

    def allows(self, subject: Optional[str]) -> bool:
        return not self.clientSubjects or subject in self.clientSubjects

    @classmethod
    def fromProperties(cls, props: Mapping[str, str]) -> Optional["ServerTLS"]:
        """
        From a server's properties; None if they ask for no TLS.
        """
        if not any(k in props for k in SERVER_PROPERTIES):
            return None
        if not props.get("tls-cert"):
            raise TLSConfigError("TLS needs tls-cert (and tls-key, unless the cert file holds it)")
        subjects = tuple(
            s.strip() for s in props.get("tls-client-subjects", "").split(",") if s.strip()
        )
        if subjects and not props.get("tls-client-ca"):
            raise TLSConfigError(
                "tls-client-subjects needs tls-client-ca (client certificates "
                "are only asked for then)"
            )
        return cls(props["tls-cert"], props.get("tls-key"), props.get("tls-client-ca"), subjects)


#: How long a TLS 1.3 client waits for a sign that the server accepted its
#: certificate when the server sends nothing after the handshake (most send
#: their session tickets at once; a refusal is an alert within a round trip).
ACCEPT_WAIT = 1.0


def wrapTLS(
    protocol: IProtocol,
    options: Union[IOpenSSLClientConnectionCreator, IOpenSSLContextFactory],
    isClient: bool,
    clock: IReactorTime,
    acceptWait: float = ACCEPT_WAIT,
) -> Protocol:
    """
    C{protocol}, speaking TLS with C{options}.  C{protocol} is told when the
    handshake is done (C{handshakeCompleted}); it may then call the
    transport's C{whenAccepted} to learn when the peer accepted the session
    (see L{_acceptingTLS}).
    """
    # No wrapped factory: this one only wraps one protocol, as Twisted's own
    # startTLS does (twisted.internet._newtls), though its signature wants one.
    from twisted.protocols.tls import TLSMemoryBIOFactory  # needs pyOpenSSL

    factory = TLSMemoryBIOFactory(options, isClient, None, clock)  # type: ignore[arg-type]
    transport: Protocol = _acceptingTLS()(factory, protocol, isClient, clock, acceptWait)
    return transport


_ACCEPTING: Optional[type] = None


def _acceptingTLS() -> type:
    """
    Twisted's TLS transport, which also tells when the peer accepted the
    session.  A client's handshake ends before the server has checked the
    client's certificate with TLS 1.3 (in 1.2 the server's Finished comes
    after that check): a refused certificate arrives as an alert just
    after.  So a TLS 1.3 client takes the session as accepted at the first
    record the server sends after the handshake that leaves it up (its
    session tickets, usually at once), or when C{acceptWait} passed with
    the connection still up.  A server, or TLS 1.2, is accepted at the end
    of the handshake.
    """
    global _ACCEPTING
    if _ACCEPTING is not None:
        return _ACCEPTING
    from twisted.internet.protocol import connectionDone
    from twisted.protocols.tls import (  # needs pyOpenSSL
        BufferingTLSTransport,
        TLSMemoryBIOFactory,
    )

    from muxpool._support import cancelTimer

    class AcceptingTLSTransport(BufferingTLSTransport):
        def __init__(
            self,
            factory: TLSMemoryBIOFactory,
            protocol: IProtocol,
            isClient: bool,
            clock: IReactorTime,
            acceptWait: float,
        ) -> None:
            super().__init__(factory, protocol)
            self._isClient = isClient
            self._clock = clock
            self._acceptWait = acceptWait
            self._onAccepted: Optional[Callable[[], None]] = None
            self._acceptTimer: Optional[IDelayedCall] = None

        def whenAccepted(self, callback: Callable[[], None]) -> None:
            """
            Call C{callback} once the peer accepted the session (at once if
            that is already known); never if the connection is lost first.
            """
            if not self._isClient or self.getHandle().get_protocol_version_name() != "TLSv1.3":
                callback()
            else:
                self._onAccepted = callback
                self._acceptTimer = self._clock.callLater(self._acceptWait, self._accepted)

        def _accepted(self) -> None:
            self._acceptTimer = cancelTimer(self._acceptTimer)
            callback, self._onAccepted = self._onAccepted, None
            if callback is not None and not self._lostTLSConnection:
                callback()

        def dataReceived(self, data: bytes) -> None:
            waiting = self._onAccepted is not None
            super().dataReceived(data)
            if waiting and not self._lostTLSConnection:
                self._accepted()  # a record after the handshake, and no alert in it

        def connectionLost(self, reason: Failure = connectionDone) -> None:
            self._acceptTimer = cancelTimer(self._acceptTimer)
            self._onAccepted = None
            super().connectionLost(reason)

    _ACCEPTING = AcceptingTLSTransport
    return _ACCEPTING


#: Why this side refused a connection's certificate, by OpenSSL connection.
_refusals: "WeakKeyDictionary[object, str]" = WeakKeyDictionary()


def refusalOf(transport: object) -> Optional[str]:
    """
    Why this side refused the peer's certificate on C{transport} (a TLS
    transport), if it did for a reason of its own (a subject not pinned).
    """
    getHandle = getattr(transport, "getHandle", None)
    try:
        return _refusals.get(getHandle()) if getHandle is not None else None
    except TypeError:  # not weakly referenceable: not an OpenSSL connection
        return None


def peerSubject(transport: object) -> Optional[str]:
    """
    The common name of the certificate the peer presented, if any.
    """
    getter = getattr(transport, "getPeerCertificate", None)
    certificate = getter() if getter is not None else None
    if certificate is None:
        return None
    from cryptography.x509.oid import NameOID

    names = certificate.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def isTLSFailure(reason: Optional[Failure]) -> bool:
    """
    Whether a connection was lost to TLS itself (a certificate refused,
    a protocol error), not to the network.
    """
    from OpenSSL.SSL import Error

    failures: List[type] = [Error]
    try:
        from service_identity import VerificationError  # a wrong host name
    except ImportError:
        pass
    else:
        failures.append(VerificationError)
    check = getattr(reason, "check", None)
    return bool(check is not None and check(*failures))


def describeTLSFailure(reason: Optional[Failure]) -> str:
    """
    Why a TLS handshake failed, in a few words from OpenSSL's own (or from
    the host name check).
    """
    value = getattr(reason, "value", reason)
    args = getattr(value, "args", ())
    if args and isinstance(args[0], list):
        parts = [
            str(entry[-1]) if isinstance(entry, (tuple, list)) and entry else str(entry)
            for entry in args[0]
        ]
        if parts:
            return "TLS: " + "; ".join(parts)
    text = getattr(reason, "getErrorMessage", lambda: str(value))()
    return f"{type(value).__name__}: {text}" if text else type(value).__name__
