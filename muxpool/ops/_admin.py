"""
The admin HTTP endpoint (twisted.web): status as JSON, Prometheus metrics,
enable / disable / drain a MUX, and a status page for people::

    GET  /                      the status page (HTML, refreshing itself)
    GET  /status                every bean's state, as JSON
    GET  /metrics               Prometheus text
    POST /muxes/NAME/enable     put NAME (back) into every pool's rotation
    POST /muxes/NAME/disable    take NAME out of every pool's rotation
    POST /muxes/NAME/drain      disable, then answer once nothing is in flight
                                on it (?timeout=SECONDS, default 30; 504 if not)

With a token every request needs C{Authorization: Bearer TOKEN}; without
one the endpoint refuses to listen anywhere but loopback.  No answer
carries message content, so no card data.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Dict, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from muxpool._config import defaultAdminConnections, hostPort, parseEndpoint
from muxpool._support import NO_KEYWORDS, RateLimiter, Waiters, backoffDelay, cancelTimer
from muxpool.ops._operations import DrainTimeout, Operations, UnknownMUX
from muxpool.ops._prometheus import CONTENT_TYPE_LATEST, metricsText

ACTIONS = ("enable", "disable", "drain")


class AdminConfigError(ValueError):
    """
    An admin endpoint that must not be used as given.
    """


def _isLoopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def checkEndpoint(description: str, token: Optional[str]) -> None:
    """
    Refuse an endpoint that would expose the admin API beyond this machine
    without a token: only loopback TCP and UNIX sockets may go without.

    @raise AdminConfigError: saying why.
    """
    if token:
        return
    endpoint = parseEndpoint(description)
    kind = endpoint.kind
    if kind == "unix":
        return
    if kind in ("tcp", "tcp6", "ssl"):
        interface = endpoint.interface
        if interface and _isLoopback(interface):
            return
        raise AdminConfigError(
            f"admin endpoint {description!r} listens on {interface or 'every interface'}: give it "
            "interface=127.0.0.1, or a token (--admin-token-file or MUXPOOL_ADMIN_TOKEN)"
        )
    raise AdminConfigError(
        f"admin endpoint {description!r}: without a token only tcp:PORT:"
        "interface=127.0.0.1 or unix: endpoints are allowed"
    )


def _json(request, code: int, body) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, indent=1, sort_keys=True, default=str).encode()


class _Leaf(Resource):
    """
    A resource answering only the methods it has C{render_*} for (405 with
    C{Allow} otherwise, 404 for anything below it).
    """

    isLeaf = True

    def render(self, request):
        if getattr(self, "render_" + request.method.decode("ascii", "replace"), None) is None:
            allowed = [m for m in ("GET", "POST", "HEAD") if hasattr(self, "render_" + m)]
            request.setHeader(b"allow", ", ".join(allowed).encode())
            return _json(
                request,
                http.NOT_ALLOWED,
                {"error": f"{request.method.decode()} not allowed; use {' or '.join(allowed)}"},
            )
        if request.postpath and request.postpath != [b""]:
            return _json(request, http.NOT_FOUND, {"error": "no such path"})
        return Resource.render(self, request)


class StatusResource(_Leaf):
    def __init__(self, operations: Operations) -> None:
        _Leaf.__init__(self)
        self.operations = operations

    def render_GET(self, request):
        return _json(request, http.OK, self.operations.status())


class MetricsResource(_Leaf):
    def __init__(self, operations: Operations) -> None:
        _Leaf.__init__(self)
        self.operations = operations

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return metricsText(self.operations)


class PageResource(_Leaf):
    """
    The status page: plain HTML and a little script that draws /status.
    It holds no data, so it needs no token: a browser cannot send one
    with the page's address; its script sends it with each /status.
    """

    def __init__(self) -> None:
        _Leaf.__init__(self)
        self.page = resources.files("muxpool.ops").joinpath("statuspage.html").read_bytes()

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.page


class ReadyResource(_Leaf):
    """
    C{GET /ready}: 200 while the node should get new sessions, else 503;
    the reason in the body.  For balancers and Kubernetes: no token needed.
    """

    def __init__(self, operations: Operations) -> None:
        _Leaf.__init__(self)
        self.node = operations.node

    def render_GET(self, request):
        ready, reason = self.node.readiness()
        code = http.OK if ready else http.SERVICE_UNAVAILABLE
        limit = self.node.sessionLimit()
        return _json(request, code, {"ready": ready, "reason": reason, "session_limit": limit})


class LiveResource(_Leaf):
    """
    C{GET /live}: 200 while the process serves.  No token needed.
    """

    def render_GET(self, request):
        return _json(request, http.OK, {"live": True})


class NodeDrainResource(_Leaf):
    """
    C{POST /drain} (C{drain}) or C{POST /undrain}: the whole node says
    "drain" and is not ready (it serves on), or no longer.
    """

    def __init__(self, operations: Operations, drain: bool) -> None:
        _Leaf.__init__(self)
        self.node = operations.node
        self.drain = drain

    def render_POST(self, request):
        if request.getHeader(b"origin") is not None:
            return _json(request, http.FORBIDDEN, {"error": FROM_A_PAGE})
        changed = self.node.drain("POST /drain") if self.drain else self.node.undrain()
        ready, reason = self.node.readiness()
        return _json(
            request,
            http.OK,
            {"draining": self.node.draining, "changed": changed, "ready": ready, "reason": reason},
        )


#: Why a POST from a web page is refused.
FROM_A_PAGE = "not from a web page: use the muxpool command"


class MuxesResource(Resource):
    """
    C{/muxes/NAME/ACTION}.
    """

    isLeaf = True

    def __init__(self, operations: Operations) -> None:
        Resource.__init__(self)
        self.operations = operations

    def render(self, request):
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        if len(path) != 2 or path[1] not in ACTIONS:
            return _json(
                request,
                http.NOT_FOUND,
                {"error": "use POST /muxes/NAME/enable, /disable or /drain"},
            )
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return _json(request, http.NOT_ALLOWED, {"error": "use POST"})
        if request.getHeader(b"origin") is not None:
            # A browser sends Origin with a POST; the CLI and scripts do not,
            # and the status page never posts.  Without a token, this keeps
            # any web page open on the switch's host from draining a member.
            return _json(request, http.FORBIDDEN, {"error": FROM_A_PAGE})
        name, action = path
        try:
            if action == "drain":
                timeout = float(request.args.get(b"timeout", [b"30"])[0])
                if not 0 < timeout <= 3600:  # also refuses nan
                    raise ValueError(timeout)
                return self._drain(request, name, timeout)
            pools = getattr(self.operations, action)(name)
        except UnknownMUX as e:
            return _json(request, http.NOT_FOUND, {"error": e.args[0]})
        except ValueError:
            return _json(
                request,
                http.BAD_REQUEST,
                {"error": "timeout must be a number of seconds, above 0 and at most 3600"},
            )
        return _json(request, http.OK, {"mux": name, "action": action, "pools": pools})

    def _drain(self, request, name: str, timeout: float):
        d: Deferred = self.operations.drain(name, timeout)
        gone: list = []
        request.notifyFinish().addErrback(gone.append)  # the client may go first

        def answer(code, body):
            if not gone:
                request.write(_json(request, code, body))
                request.finish()

        def done(pools):
            answer(http.OK, {"mux": name, "action": "drain", "pools": pools, "drained": True})

        def late(failure):
            failure.trap(DrainTimeout)
            answer(
                http.GATEWAY_TIMEOUT,
                {"mux": name, "action": "drain", "drained": False, "error": str(failure.value)},
            )

        d.addCallbacks(done, late)
        return NOT_DONE_YET


#: What needs no token: the page (it holds no data; see L{PageResource}) and
#: the probes balancers and Kubernetes make.
OPEN_PATHS = (b"", b"ready", b"live")


class AdminResource(Resource):
    """
    The admin API's root: routes, and the token check for everything.
    """

    def __init__(
        self,
        operations: Optional[Operations],
        token: Optional[str] = None,
        routes: Optional[Dict[bytes, Resource]] = None,
    ) -> None:
        """
        @param routes: what serves each path, instead of C{operations}
            (a C{--workers} parent's, over its workers').
        """
        Resource.__init__(self)
        self.token = token
        self.putChild(b"", PageResource())
        if routes is None:
            assert operations is not None
            routes = {
                b"status": StatusResource(operations),
                b"metrics": MetricsResource(operations),
                b"muxes": MuxesResource(operations),
                b"ready": ReadyResource(operations),
                b"live": LiveResource(),
                b"drain": NodeDrainResource(operations, True),
                b"undrain": NodeDrainResource(operations, False),
            }
        for path, resource in routes.items():
            self.putChild(path, resource)

    def getChildWithDefault(self, path, request):
        if self.token and path not in OPEN_PATHS and not self._authorized(request):
            return _Unauthorized()  # all but the page and the probes
        return Resource.getChildWithDefault(self, path, request)

    def getChild(self, path, request):
        return _NotFound()

    def _authorized(self, request) -> bool:
        assert self.token is not None  # asked only when there is one
        return _bearerIs(request, self.token)


def _bearerIs(request, token: str) -> bool:
    """
    Whether C{request} carries C{Authorization: Bearer} C{token}.
    """
    header = request.getHeader(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())


#: The largest request body the admin API reads (its requests have none).
MAX_BODY = 64 * 1024

#: What a client with a wrong token is told (the CLI's option named).
UNAUTHORIZED = "needs Authorization: Bearer <token> (muxpool ... --token-file FILE)"


class _AdminRequest(Request):
    """
    A request whose token and size are checked as soon as its headers are
    in, before a byte of its body is read: a wrong token, or a body larger
    than L{MAX_BODY} (or one that grows past it), is answered at once and
    the connection closed, so no one fills a disk or memory with a body.
    """

    _refused = False
    _received = 0

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        arrived = getattr(self.channel.transport, "requestArrived", None)
        if arrived is not None:
            arrived()  # whole, within its deadline
        if not self._refused:  # a refused request is never processed
            Request.requestReceived(self, command, path, version)

    def gotLength(self, length: Optional[int]) -> None:
        site: Any = self.channel.site  # type: ignore[attr-defined]  # an _AdminSite
        token = site.token
        if length != 0 and token and not _bearerIs(self, token):
            self._refuse(401, "Unauthorized", UNAUTHORIZED, b'Bearer realm="muxpool"')
        elif length is not None and length > MAX_BODY:
            self._refuse(413, "Content Too Large", f"a body is at most {MAX_BODY} bytes")
        else:
            Request.gotLength(self, length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self._refuse(413, "Content Too Large", f"a body is at most {MAX_BODY} bytes")
            return
        Request.handleContentChunk(self, data)

    def _refuse(self, code: int, reason: str, error: str, authenticate: bytes = b"") -> None:
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after a refusal
        body = json.dumps({"error": error}).encode()
        head = [
            f"HTTP/1.1 {code} {reason}".encode(),
            b"content-type: application/json",
            b"connection: close",
            b"content-length: %d" % len(body),
        ]
        if authenticate:
            head.append(b"www-authenticate: " + authenticate)
        self.channel.dataReceived = lambda data: None  # type: ignore[method-assign]  # no more
        transport = self.channel.transport
        assert transport is not None  # its headers just came in on it
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        transport.loseConnection()


class _AdminSite(Site):
    """
    The admin API's site: its requests are L{_AdminRequest}s, checked
    against C{token} before their bodies are read.
    """

    requestFactory = _AdminRequest

    def __init__(self, resource: "AdminResource", timeout: float) -> None:
        Site.__init__(self, resource, timeout=timeout)
        self.token = resource.token


class _Unauthorized(Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"www-authenticate", b'Bearer realm="muxpool"')
        return _json(request, http.UNAUTHORIZED, {"error": UNAUTHORIZED})


class _NotFound(Resource):
    isLeaf = True

    def render(self, request):
        return _json(request, http.NOT_FOUND, {"error": "no such path"})


#: Seconds an admin connection may stay idle.
IDLE_TIMEOUT = 30

#: Seconds a request may take to arrive whole, from its first byte (or the
#: connection's start): a client trickling it a byte at a time, each within
#: the idle timeout, cannot hold a connection for ever.
REQUEST_TIMEOUT = 10


if TYPE_CHECKING:
    _Wrapping = WrappingFactory[Any]
else:  # older Twisted's WrappingFactory is not generic
    _Wrapping = WrappingFactory


class _RequestDeadline(ProtocolWrapper):
    """
    An admin connection whose requests must each arrive whole (headers and
    body) within L{REQUEST_TIMEOUT} of their first byte (the first one's,
    of the connection's start); else it is closed.  A client trickling a
    byte at a time, each within the idle timeout, cannot hold it for ever.
    """

    _timer: Optional[IDelayedCall] = None
    _arrived = False  # the request under way came whole, and is not answered yet

    def makeConnection(self, transport: Any) -> None:
        self._arm()
        ProtocolWrapper.makeConnection(self, transport)

    def _arm(self) -> None:
        factory: Any = self.factory
        self._timer = factory.clock.callLater(REQUEST_TIMEOUT, self._late)

    def _late(self) -> None:
        self._timer = None
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def requestArrived(self) -> None:
        """
        The request under way came whole (see L{_AdminRequest}).
        """
        self._arrived = True
        self._timer = cancelTimer(self._timer)

    def dataReceived(self, data: bytes) -> None:
        if self._timer is None and not self._arrived:
            self._arm()  # the next request's first byte
        ProtocolWrapper.dataReceived(self, data)

    def write(self, data: bytes) -> None:
        self._arrived = False  # answered: what comes next is a new request
        ProtocolWrapper.write(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._timer = cancelTimer(self._timer)
        ProtocolWrapper.connectionLost(self, reason)


class _Limited(_Wrapping):
    """
    The admin site, holding at most C{limit} connections at once; more are
    closed at once, said at a bounded rate.
    """

    log = Logger()
    noisy = False

    protocol = _RequestDeadline

    def __init__(self, site: Site, limit: int, clock: Any) -> None:
        super().__init__(site)
        self.limit = limit
        self.clock = clock
        self._limiter = RateLimiter(clock=clock)

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.protocols) >= self.limit:
            self._limiter.emit(
                self.log.warn,
                "admin full",
                "admin API: refused a connection from {peer}: {limit} connections open",
                peer=hostPort(addr),
                limit=self.limit,
                event="admin.refused",
            )
            # A protocol that closes at once, not None: a TLS factory
            # wrapping this one would fail on None.
            return _Refused()
        return WrappingFactory.buildProtocol(self, addr)


class _Refused(Protocol):
    """
    An admin connection beyond the limit: closed as soon as it is made.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


@implementer(IStreamServerEndpoint)
class _Announcing:
    """
    The admin endpoint, saying once where it listens, or why it cannot (in
    one line, where Twisted would log a traceback); a port it cannot take
    (another process has it) is tried again with a growing delay, said
    again only when the reason changes, until it listens or is stopped.
    """

    log = Logger()

    def __init__(
        self, endpoint: IStreamServerEndpoint, service: "AdminService", clock: Any
    ) -> None:
        self._endpoint = endpoint
        self._service = service
        self._clock = clock
        self._pending: Optional[Deferred] = None
        self._timer: Optional[IDelayedCall] = None

    def listen(self, factory: Any) -> Deferred:
        """
        Fires with the port once listening; cancelling it stops trying.
        """
        result: Deferred = Deferred(self._cancel)
        self._try(factory, result, 0, None)
        return result

    def _try(self, factory: Any, result: Deferred, failures: int, why: Optional[str]) -> None:
        self._timer = None
        self._pending = self._endpoint.listen(factory)
        self._pending.addCallbacks(
            self._listening,
            self._failed,
            (result, failures),
            NO_KEYWORDS,
            (factory, result, failures, why),
            NO_KEYWORDS,
        )

    def _listening(self, port: IListeningPort, result: Deferred, failures: int) -> None:
        self._pending = None
        self.log.info(
            "admin API on {address}{after}",
            event="admin.listening",
            address=hostPort(port.getHost()),
            after=f" (after {failures} failed attempts)" if failures else "",
        )
        self._service._listened(port)
        result.callback(port)

    def _failed(
        self,
        failure: Failure,
        factory: Any,
        result: Deferred,
        failures: int,
        before: Optional[str],
    ) -> None:
        self._pending = None
        if failure.check(CancelledError) or result.called:
            return  # stopped before it listened
        why = failure.getErrorMessage()
        service = self._service
        if why != before:
            self.log.error(
                "admin API cannot listen on {endpoint}: {why}; trying again every "
                "{delay:g}s at most",
                endpoint=service.description,
                why=why,
                delay=service.retryCap,
                event="admin.listen_failed",
            )
        delay = backoffDelay(failures + 1, service.retryDelay, service.retryCap, 2.0)
        self._timer = self._clock.callLater(delay, self._try, factory, result, failures + 1, why)

    def _cancel(self, result: Deferred) -> None:
        self._timer = cancelTimer(self._timer)
        if self._pending is not None:
            self._pending.cancel()


class AdminService(StreamServerEndpointService):
    """
    Serves the admin API on a Twisted server endpoint string.  A port
    another process holds is tried again, after C{retryDelay} seconds
    growing to C{retryCap}, until it is free.

    @raise AdminConfigError: an endpoint beyond loopback without a token.
    """

    retryDelay = 1.0
    retryCap = 30.0

    def __init__(
        self,
        endpoint: str,
        operations: Optional[Operations],
        reactor: Any,
        token: Optional[str] = None,
        routes: Optional[Dict[bytes, Resource]] = None,
    ) -> None:
        checkEndpoint(endpoint, token)
        # An idle connection is closed after a while, and there are only so
        # many at once: idle admin connections cannot take the process's
        # file descriptors.
        site = _AdminSite(AdminResource(operations, token, routes), IDLE_TIMEOUT)
        site.noisy = False
        self.connections = _Limited(site, defaultAdminConnections(), reactor)
        StreamServerEndpointService.__init__(
            self, _Announcing(serverFromString(reactor, endpoint), self, reactor), self.connections
        )
        self.setName("admin")
        self.description = endpoint
        self.site = site
        self.port: Optional[IListeningPort] = None
        self._listeners = Waiters()

    def _listened(self, port: IListeningPort) -> None:
        self.port = port
        self._listeners.fire(port)

    def whenListening(self) -> Deferred:
        """
        Fires with the listening port (at once if listening).
        """
        return succeed(self.port) if self.port is not None else self._listeners.wait()

    def stopService(self) -> Deferred:
        """
        Stop listening; fires when the port is closed.  A service that
        never started has nothing to stop, and one stopped can start again.
        """
        self._listeners.cancel()
        self.port = None
        if self._waitingForPort is None:
            self.running = False
            return succeed(None)

        def forget(result: object) -> object:
            self._waitingForPort = None  # started again, it listens again
            return result

        return StreamServerEndpointService.stopService(self).addBoth(forget)
