"""
Building a bean from a descriptor (L{buildBean}): the service, plus what it
needs wired by name (a QMUX's adaptor, a pool's members).  Every error
names the file, the line and the element.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from muxpool._config import parseFieldList, tcpEndpoint, yesNo
from muxpool.channel import ClientTLS, ServerTLS
from muxpool.deploy._bean import Bean, Reference
from muxpool.deploy._listeners import UnhandledByName, problemOf, unhandledHandler
from muxpool.deploy._reader import DescriptorReader
from muxpool.deploy._schema import (
    ADAPTOR_CHANNEL_PROPERTIES,
    IGNORED_SERVER_ATTRS,
    KNOWN,
    PROPERTIES,
    SERVER_ATTRS,
    SERVER_CHANNEL_PROPERTIES,
    kindOf,
)
from muxpool.deploy._xml import DescriptorError, Node
from muxpool.link import AdaptorSettings, ChannelAdaptor, QServer, ServerSettings, parsePatterns
from muxpool.mux import (
    MAX_UNANSWERED,
    QMUX,
    UNMATCHED_LIMIT,
    Ejection,
    KeyBuilder,
    MUXPool,
    StrategyConfigError,
    strategyByName,
    strategyByPath,
)


def buildBean(path: str, root: Node, reactor, registry, sockets=None) -> Bean:
    """
    Build (not start) the bean C{root} describes.  Unknown attributes,
    elements and properties are warnings naming file and line; elements
    that would change the wire and are not supported are errors.

    @raise DescriptorError: naming file, line and element.
    """
    kind = kindOf(path, root)
    name = (root.attrib.get("name") or "").strip()
    if not name:
        raise DescriptorError(path, root.line, root.tag, "missing name attribute")
    reader = DescriptorReader(path, root)
    reader.sockets = sockets
    reader.refuseWireChanges(root)
    reader.warnUnknown(root, KNOWN[kind])
    bean = _BUILDERS[kind](reader, name, root, reactor, registry)
    bean.references.extend(reader.references)
    return bean


def _adaptor(reader: DescriptorReader, name, root, reactor, registry) -> Bean:
    reader.properties(root, PROPERTIES["channel-adaptor"])
    spec, props = reader.channel(root, ADAPTOR_CHANNEL_PROPERTIES)
    channel = root.child("channel")

    endpoint = props.get("endpoint")
    host, port = props.get("host"), props.get("port")
    if not endpoint and not (host and port):
        raise reader.error(channel, "needs host and port properties, or an endpoint")
    timeout = reader.milliseconds(props.get("timeout"), "timeout")
    try:
        settings = AdaptorSettings(
            reconnectDelay=reader.milliseconds(
                root.childText("reconnect-delay"), "reconnect-delay", 10.0
            ),
            maxReconnectDelay=reader.milliseconds(
                root.childText("max-reconnect-delay"), "max-reconnect-delay"
            ),
            connectTimeout=reader.milliseconds(
                props.get("connect-timeout"), "connect-timeout", timeout
            )
            or None,
            idleTimeout=timeout or None,
            keepAlive=yesNo(root.childText("keep-alive"), False),
            tcpKeepAlive=yesNo(props.get("keep-alive"), False),
            signOn=yesNo(root.childText("sign-on"), False),
            echoInterval=reader.milliseconds(root.childText("echo-interval"), "echo-interval"),
            echoTimeout=reader.milliseconds(root.childText("echo-timeout"), "echo-timeout", 10.0),
            tls=ClientTLS.fromProperties(reader.files(props), host),
        )
        target = endpoint or (str(host), reader.number(channel, port, "port", cast=int))
        adaptor = ChannelAdaptor(name, spec, target, reactor, settings)
    except DescriptorError:
        raise
    except ValueError as e:
        raise reader.error(channel, str(e)) from None
    return Bean(
        name,
        "channel-adaptor",
        adaptor,
        reader.path,
        inQueue=root.childText("in"),
        outQueue=root.childText("out"),
    )


def _qmux(reader: DescriptorReader, name, root, reactor, registry) -> Bean:
    fields: Tuple[str, ...] = ("41", "11")
    overrides: Dict[str, Tuple[str, ...]] = {}
    for key in root.all("key"):
        mti = key.attrib.get("mti")
        listed = parseFieldList(key.text)
        if not listed:
            raise reader.error(key, "empty key")
        if mti and len(mti) >= 2:
            pcode = (key.attrib.get("pcode") or "").strip()
            overrides[mti[:2] + (":" + pcode if pcode else "")] = listed
        else:
            fields = listed
    mapping = parseFieldList(root.childText("mtimapping") or "")
    if mapping and (len(mapping) != 3 or any(len(m) != 10 or not m.isdigit() for m in mapping)):
        raise reader.error(root.child("mtimapping"), "needs three strings of ten digits")
    props = reader.properties(root, PROPERTIES["qmux"])
    unhandled = None
    node = root.child("unhandled")
    if node is not None and node.text.strip():
        try:
            unhandled = unhandledHandler(node.text.strip(), registry, reactor)
        except Exception as e:
            raise reader.error(node, f"{node.text.strip()!r}: {problemOf(e)}") from None
        if isinstance(unhandled, UnhandledByName):
            reader.references.append(
                Reference(
                    "unhandled handler",
                    unhandled.name,
                    node.line,
                    node.tag,
                    "unhandled messages are only counted and logged until it is",
                )
            )
    mux = QMUX(
        name,
        None,
        reactor,
        KeyBuilder(fields, overrides, mapping or None),
        ignoreRC=parseFieldList(root.childText("ignore-rc") or ""),
        returnRejects=yesNo(props.get("return-rejects"), False),
        listeners=reader.listeners(root, reactor, registry),
        unhandled=unhandled,
        unmatchedLimit=reader.childNumber(root, "unmatched-limit", UNMATCHED_LIMIT, int),
        maxInFlight=_maxInFlight(reader, root),
    )
    inQueue, outQueue = root.childText("in"), root.childText("out")
    ready = parseFieldList(root.childText("ready") or "")
    if not outQueue and not ready:
        raise reader.error(root, "missing required element <out> (or <ready>): which channel?")
    return Bean(
        name, "qmux", mux, reader.path, inQueue=inQueue, outQueue=outQueue, readyNames=ready
    )


def _pool(reader: DescriptorReader, name, root, reactor, registry) -> Bean:
    members = parseFieldList(root.childText("muxes") or "")
    if not members:
        raise reader.error(root, "missing required element <muxes>")
    props = reader.properties(root, PROPERTIES["pool"])
    config = {
        "follower-override": root.childText("follower-override") or "",
        "original-channel-field": root.childText("original-channel-field") or "",
        "split-field": root.childText("split-field") or "",
        "weights": root.childText("weights") or props.get("weights", ""),
        "decay-time": root.childText("decay-time") or "",
    }
    strategyNode = root.child("strategy") or root
    try:
        builtin = strategyByName(root.childText("strategy"), config)
    except StrategyConfigError as e:
        raise reader.error(strategyNode, str(e)) from None
    handler = root.child("strategy-handler")
    strategy, fallback = builtin, None
    if handler is not None:
        cls = handler.attrib.get("class")
        if not cls:
            raise reader.error(handler, "missing class attribute")
        try:
            strategy = strategyByPath(cls, dict(config, **reader.properties(handler)))
        except StrategyConfigError as e:
            raise reader.error(handler, str(e)) from None
        fallback = builtin
    ejection = _ejection(reader, root)
    unanswered = reader.childNumber(root, "max-unanswered", MAX_UNANSWERED, int)
    checkEnabled = yesNo(root.childText("check-enabled", props.get("check-enabled")), False)
    pool = MUXPool(
        name,
        [],
        reactor,
        strategy,
        checkEnabled=checkEnabled,
        fallback=fallback,
        ejection=ejection,
        maxUnanswered=unanswered,
        maxInFlight=_maxInFlight(reader, root),
    )
    return Bean(name, "pool", pool, reader.path, memberNames=members)


def _ejection(reader: DescriptorReader, root: Node) -> Ejection:
    """
    A pool's outlier ejection (muxpool's; off unless asked for).
    """

    def number(element: str, default, cast=float):
        return reader.childNumber(root, element, default, cast)

    timeouts = number("consecutive-timeouts", None, int)
    if timeouts is None and root.child("suspend-after-timeouts") is not None:
        # the older spelling, as it behaved: any member out, and no panic
        return Ejection(
            consecutiveTimeouts=number("suspend-after-timeouts", 0, int),
            maxEjectionPercent=100.0,
            panicPercent=0.0,
        )
    percent = number("max-ejection-percent", 50.0)
    return Ejection(
        consecutiveTimeouts=timeouts or 0,
        consecutiveCodes=number("consecutive-codes", 0, int),
        outlierCodes=frozenset(parseFieldList(root.childText("outlier-codes") or "")),
        ejectionTime=reader.milliseconds(
            root.childText("ejection-time"), "ejection-time", 30.0, root
        ),
        maxEjectionTime=reader.milliseconds(
            root.childText("max-ejection-time"), "max-ejection-time", 300.0, root
        ),
        maxEjectionPercent=percent,
        panicPercent=percent,
    )


def _maxInFlight(reader: DescriptorReader, root: Node) -> Optional[int]:
    """
    A MUX's C{<max-in-flight>}: None (no limit) if absent; at least 1.
    """
    limit = reader.childNumber(root, "max-in-flight", None, int)
    if limit is not None and limit < 1:
        raise reader.error(root.child("max-in-flight") or root, "max-in-flight must be 1 or more")
    return limit


def _server(reader: DescriptorReader, name, root, reactor, registry) -> Bean:
    spec, channelProps = reader.channel(root, SERVER_CHANNEL_PROPERTIES)
    attrs = {}
    for attr in root.all("attr"):
        attrName = attr.attrib.get("name", "")
        if attrName not in SERVER_ATTRS:
            reader.warn(
                attr,
                f"unknown attr {attrName!r} ignored (known: {', '.join(sorted(SERVER_ATTRS))})",
            )
        elif attrName in IGNORED_SERVER_ATTRS:
            continue
        attrs[attrName] = (attr, attr.text.strip())
    props = reader.properties(root, PROPERTIES["server"])
    endpoint = props.get("endpoint")
    if endpoint is None:
        if "port" not in attrs:
            raise reader.error(
                root, 'missing required <attr name="port"> (or an endpoint property)'
            )
        port = reader.number(attrs["port"][0], attrs["port"][1], "port", cast=int)
        if port is None:
            raise reader.error(attrs["port"][0], "port is empty")
        endpoint = tcpEndpoint(port, props.get("bind-address"))
    maxSessions = None
    if "maxSessions" in attrs:
        maxSessions = reader.number(
            attrs["maxSessions"][0], attrs["maxSessions"][1], "maxSessions", cast=int
        )

    try:
        settings = ServerSettings(
            maxSessions=maxSessions,
            allow=parsePatterns(props.get("allow")),
            deny=parsePatterns(props.get("deny")),
            gracePeriod=reader.milliseconds(props.get("grace-period"), "grace-period", 5.0),
            maxInFlight=reader.number(root, props.get("max-in-flight"), "max-in-flight", 128, int),
            # jPOS's channel timeout is the read timeout of each accepted channel.
            idleTimeout=reader.milliseconds(
                channelProps.get("timeout", props.get("idle-timeout")), "idle-timeout", 300.0
            )
            or None,
            frameTimeout=reader.milliseconds(props.get("frame-timeout"), "frame-timeout", 10.0)
            or None,
            signOffOnStop=yesNo(props.get("sign-off-on-stop"), False),
            signOffTimeout=reader.milliseconds(
                props.get("sign-off-timeout"), "sign-off-timeout", 1.0
            ),
            stopQuiet=reader.milliseconds(props.get("stop-quiet"), "stop-quiet", 0.5),
            proxyProtocol=props.get("proxy-protocol") or None,
            proxyFrom=parsePatterns(props.get("proxy-from")),
            listenerErrorCode=props.get("listener-error-code", "96"),
            tls=ServerTLS.fromProperties(reader.files(props)),
        )
        server = QServer(
            name,
            spec,
            endpoint,
            reactor,
            settings,
            listeners=reader.listeners(root, reactor, registry),
            sockets=reader.sockets,
        )
    except DescriptorError:
        raise
    except ValueError as e:
        raise reader.error(root, str(e)) from None
    return Bean(name, "server", server, reader.path)


_BUILDERS: Dict[str, Callable] = {
    "channel-adaptor": _adaptor,
    "qmux": _qmux,
    "pool": _pool,
    "server": _server,
}
