"""
jPOS-style QBean descriptors: one XML file, one bean.

L{readDescriptor} parses a file (keeping line numbers for errors) and
expands C{${NAME}} / C{${NAME:default}} from the environment as jPOS's
Environment does; L{buildBean} turns it into a L{Bean}: the service plus
what it needs wired by name (a QMUX's adaptor, a pool's members).  Every
error names the file, the line and the element.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import xml.parsers.expat
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from muxpool.adaptor import ChannelAdaptor
from muxpool.boundary import NoSuchModule, NoSuchName, describeError, importNamed
from muxpool.channel import ChannelSpec, flag
from muxpool.interfaces import IRequestListener
from muxpool.listeners import Forward, Responder
from muxpool.messages import parseFieldList
from muxpool.mux import KeyBuilder, QMUX
from muxpool.pool import MUXPool
from muxpool.ratelimit import RateLimiter
from muxpool.server import QServer, tcpEndpoint
from muxpool.strategies import StrategyConfigError, strategyByName, strategyByPath
from muxpool.tls import CLIENT_PROPERTIES, SERVER_PROPERTIES, ClientTLS, ServerTLS

log = Logger()


class DescriptorError(ValueError):
    """
    A descriptor that cannot be deployed: C{file:line: <element>: problem}.
    """

    def __init__(self, path: str, line: int, element: str, problem: str) -> None:
        ValueError.__init__(self, f"{path}:{line}: <{element}>: {problem}")
        self.path = path
        self.line = line
        self.element = element
        self.problem = problem


@dataclass
class Node:
    """
    One XML element with the line it starts on.
    """

    tag: str
    attrib: Dict[str, str]
    line: int
    children: List["Node"] = field(default_factory=list)
    text: str = ""

    def child(self, tag: str) -> Optional["Node"]:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def childText(self, tag: str, default: Optional[str] = None) -> Optional[str]:
        c = self.child(tag)
        return c.text.strip() if c is not None else default

    def all(self, tag: str) -> List["Node"]:
        return [c for c in self.children if c.tag == tag]


_VARIABLE = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")


def expand(value: str, env: Mapping[str, str], where: Tuple[str, int, str]) -> str:
    """
    Replace C{${NAME}} and C{${NAME:default}} from C{env}.
    """

    def replace(match):
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise DescriptorError(*where, f"${{{name}}} is not set and has no default")

    return _VARIABLE.sub(replace, value)


def readDescriptor(path: str, env: Optional[Mapping[str, str]] = None,
                   source: Optional[bytes] = None) -> Node:
    """
    Parse C{path} (or C{source}, its bytes already read) into L{Node}s,
    expanding variables.

    @raise DescriptorError: malformed XML or an unset variable.
    """
    env = os.environ if env is None else env
    stack: List[Node] = []
    roots: List[Node] = []
    parser = xml.parsers.expat.ParserCreate()

    def start(tag, attrib):
        line = parser.CurrentLineNumber
        node = Node(tag, {k: expand(v, env, (path, line, tag)) for k, v in attrib.items()}, line)
        if stack:
            stack[-1].children.append(node)
        else:
            roots.append(node)
        stack.append(node)

    def end(tag):
        node = stack.pop()
        node.text = expand(node.text, env, (path, node.line, tag))

    def data(text):
        if stack:
            stack[-1].text += text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        if source is not None:
            parser.Parse(source, True)
        else:
            with open(path, "rb") as f:
                parser.ParseFile(f)
    except xml.parsers.expat.ExpatError as e:
        raise DescriptorError(path, e.lineno, "?", f"malformed XML: {xml.parsers.expat.errors.messages.get(e.code, e)}") from None
    except OSError as e:
        raise DescriptorError(path, 0, "?", f"cannot read: {e.strerror}") from None
    if not roots:
        raise DescriptorError(path, 1, "?", "no element")
    return roots[0]


# -- what each bean kind accepts --------------------------------------------

#: Attributes jPOS users carry that mean nothing here: accepted, ignored.
IGNORED_ATTRIBUTES = {"logger", "realm", "type", "enabled"}
IGNORED_ELEMENTS = {"space"}

#: jPOS elements and properties that change what goes on the wire (a MAC or
#: encryption filter, a TLS socket factory).  Running without them would
#: send something other than the peer expects, so such a bean is refused.
WIRE_ELEMENTS = {
    "filter": "a filter changes what goes on the wire (a MAC, an encryption)",
    "server-socket-factory": "a socket factory changes the transport (TLS)",
}
WIRE_PROPERTIES = {
    "socketFactory": "a socket factory changes the transport (TLS); use an endpoint "
                     "property instead, e.g. tls:host:port",
}

CHANNEL_ELEMENTS = {"property"}
CHANNEL_ATTRIBUTES = {"name", "class", "packager", "header"}
#: Properties of <channel>, by the kind of bean it is in.
CHANNEL_PROPERTIES = {"packager-config", "max-packet-length", "length-digits", "tpdu-swap",
                      "srcid", "dstid", "timeout"}
ADAPTOR_CHANNEL_PROPERTIES = CHANNEL_PROPERTIES | {"host", "port", "endpoint", "connect-timeout",
                                                   "keep-alive"} | CLIENT_PROPERTIES
SERVER_CHANNEL_PROPERTIES = CHANNEL_PROPERTIES
#: Properties of the bean itself.
PROPERTIES = {
    "channel-adaptor": set(),
    "qmux": {"return-rejects"},
    "pool": {"check-enabled", "weights"},
    "server": {"endpoint", "bind-address", "allow", "deny", "grace-period", "listener-error-code",
               "max-in-flight", "idle-timeout", "frame-timeout", "sign-off-on-stop",
               "sign-off-timeout"} | SERVER_PROPERTIES,
}
#: <attr name="..."> of a server (minSessions sizes jPOS's thread pool).
SERVER_ATTRS = {"port", "maxSessions", "minSessions"}
IGNORED_SERVER_ATTRS = {"minSessions"}

KNOWN = {
    "channel-adaptor": {"channel", "in", "out", "reconnect-delay", "max-reconnect-delay",
                        "keep-alive", "sign-on", "echo-interval", "echo-timeout", "property"},
    "qmux": {"in", "out", "ready", "unhandled", "key", "mtimapping", "ignore-rc",
             "request-listener", "property"},
    "pool": {"muxes", "strategy", "follower-override", "original-channel-field", "split-field",
             "strategy-handler", "weights", "suspend-after-timeouts", "check-enabled", "property"},
    "server": {"attr", "channel", "request-listener", "property"},
}

CLASSES = {
    "channel-adaptor": {None: "channel-adaptor", "org.jpos.q2.iso.ChannelAdaptor": "channel-adaptor",
                        "muxpool.adaptor.ChannelAdaptor": "channel-adaptor"},
    "mux": {None: "qmux", "org.jpos.q2.iso.QMUX": "qmux", "muxpool.mux.QMUX": "qmux",
            "org.jpos.q2.iso.MUXPool": "pool", "muxpool.pool.MUXPool": "pool"},
    "server": {None: "server", "org.jpos.q2.iso.QServer": "server",
               "muxpool.server.QServer": "server"},
}



@dataclass
class Reference:
    """
    A name a bean uses that deploy must find (a MUX, an unhandled handler),
    with where the descriptor says it.
    """

    what: str
    name: str
    line: int
    element: str
    consequence: str = ""


@dataclass(eq=False)
class Bean:
    """
    A deployed descriptor's service and what it is wired by.

    @ivar kind: C{channel-adaptor}, C{qmux}, C{pool} or C{server}.
    @ivar inQueue, outQueue: jPOS queue names (adaptors and QMUXes).
    @ivar readyNames: a QMUX's C{<ready>} names (C{adaptor.ready}).
    @ivar memberNames: a pool's C{<muxes>}.
    @ivar references: other names it uses (L{Reference}s), checked when
        deployed.
    @ivar source: the descriptor's bytes, to tell a rename from a change.
    """

    name: str
    kind: str
    service: Any  # by kind: a ChannelAdaptor, QMUX, MUXPool or QServer
    path: str
    inQueue: Optional[str] = None
    outQueue: Optional[str] = None
    readyNames: Tuple[str, ...] = ()
    memberNames: Tuple[str, ...] = ()
    references: List[Reference] = field(default_factory=list)
    source: bytes = b""


class _Reader:
    """
    Reads one descriptor, turning every problem into a L{DescriptorError}.
    """

    def __init__(self, path: str, root: Node) -> None:
        self.path = path
        self.root = root
        self.references: List[Reference] = []
        self.sockets = None

    def error(self, node: Node, problem: str) -> DescriptorError:
        return DescriptorError(self.path, node.line, node.tag, problem)

    def warn(self, node: Node, problem: str) -> None:
        log.warn("{path}:{line}: <{tag}>: {problem}", path=self.path, line=node.line,
                 tag=node.tag, problem=problem)

    def refuseWireChanges(self, node: Node) -> None:
        """
        Refuse a bean whose descriptor asks for something that changes the
        wire and that muxpool does not do: better not deployed than wrong.
        """
        for child in node.children:
            why = WIRE_ELEMENTS.get(child.tag)
            if why is not None:
                raise self.error(child, f"not supported: {why}; refusing to deploy this bean "
                                        "rather than run without it")
            self.refuseWireChanges(child)
        if node.tag == "property" and node.attrib.get("name") in WIRE_PROPERTIES:
            raise self.error(node, f"property {node.attrib['name']!r} is not supported: "
                                   f"{WIRE_PROPERTIES[node.attrib['name']]}; refusing to deploy")
        for attr in node.attrib:
            if attr in WIRE_PROPERTIES and node.tag in ("channel", "server", "attr"):
                raise self.error(node, f"{attr!r} is not supported: {WIRE_PROPERTIES[attr]}")
        if node.tag == "attr" and node.attrib.get("name") in WIRE_PROPERTIES:
            raise self.error(node, f"attr {node.attrib['name']!r} is not supported: "
                                   f"{WIRE_PROPERTIES[node.attrib['name']]}")

    def warnUnknown(self, node: Node, known: set, attributes=("name", "class")) -> None:
        for attr in node.attrib:
            if attr not in IGNORED_ATTRIBUTES and attr not in attributes:
                self.warn(node, f"unknown attribute {attr!r} ignored")
        for child in node.children:
            if child.tag not in known and child.tag not in IGNORED_ELEMENTS:
                self.warn(child, "unknown element ignored")

    def properties(self, node: Optional[Node], known=None, prefixes=()) -> Dict[str, str]:
        """
        C{node}'s C{<property>} children; with C{known}, a name that is not
        in it (nor starts with one of C{prefixes}) is a warning naming the
        file and line.
        """
        props: Dict[str, str] = {}
        if node is None:
            return props
        for p in node.all("property"):
            name = p.attrib.get("name")
            if not name:
                raise self.error(p, "property without a name")
            if "value" not in p.attrib and "file" not in p.attrib:
                raise self.error(p, f"property {name!r} without a value")
            if known is not None and name not in known and not name.startswith(tuple(prefixes)):
                self.warn(p, f"unknown property {name!r} ignored"
                             f" (known: {', '.join(sorted(known)) or 'none'})")
            props[name] = p.attrib.get("value", p.attrib.get("file", "")).strip()
        return props

    def number(self, node: Node, text: Optional[str], what: str, default=None, cast=float):
        if text is None or text == "":
            return default
        try:
            return cast(text.strip())
        except ValueError:
            raise self.error(node, f"bad number for {what}: {text!r}") from None


    def channel(self, node: Node, known: set) -> Tuple[ChannelSpec, Dict[str, str]]:
        channel = node.child("channel")
        if channel is None:
            raise self.error(node, "missing required element <channel>")
        self.warnUnknown(channel, CHANNEL_ELEMENTS, CHANNEL_ATTRIBUTES)
        props = self.properties(channel, known)
        cls = channel.attrib.get("class")
        if not cls:
            raise self.error(channel, "missing class attribute")
        props_for_spec = dict(props)
        config = props_for_spec.get("packager-config")
        if config:
            props_for_spec["packager-config"] = self.beside(config)
        try:
            spec = ChannelSpec.fromConfig(
                cls, channel.attrib.get("packager", "ISO87A"), channel.attrib.get("header"),
                props_for_spec,
            )
        except (KeyError, ValueError) as e:
            raise self.error(channel, str(e).strip('"')) from None
        except Exception as e:
            raise self.error(channel, f"cannot build the channel: {describeError(e)}") from None
        return spec, props

    def files(self, props: Mapping[str, str]) -> Dict[str, str]:
        """
        C{props} with the TLS file paths looked up beside the descriptor.
        """
        return {k: (self.beside(v) if k.startswith("tls-") and k.endswith(("-ca", "-cert", "-key"))
                    else v) for k, v in props.items()}

    def beside(self, relative: str) -> str:
        """
        A path in the descriptor, looked up beside the descriptor if it is
        relative and exists there.
        """
        if os.path.isabs(relative):
            return relative
        candidate = os.path.join(os.path.dirname(self.path), relative)
        return candidate if os.path.exists(candidate) else relative

    def listeners(self, node: Node, reactor, registry) -> List[IRequestListener]:
        out = []
        for element in node.all("request-listener"):
            cls = element.attrib.get("class")
            if not cls:
                raise self.error(element, "missing class attribute")
            try:
                factory = listenerClass(cls)
                known = getattr(factory, "properties", None)
                props = self.properties(element, known, getattr(factory, "propertyPrefixes", ()))
                listener = makeListener(cls, props, reactor, registry)
            except DescriptorError:
                raise
            except Exception as e:
                raise self.error(element, f"request listener {cls!r}: {_problem(e)}") from None
            if isinstance(listener, Forward):
                self.references.append(Reference(
                    "MUX", listener.muxName, element.line, element.tag,
                    f"requests are declined 39={listener.notSentCode} until it is"))
            out.append(listener)
        return out


def _problem(error: Exception) -> str:
    """
    What a user's code did wrong, for a descriptor error: our own errors
    say it in words; anything else by type and place.
    """
    if isinstance(error, (KeyError, ValueError, TypeError, ImportError, AttributeError)) \
            and not isinstance(error, SyntaxError):
        text = str(error).strip('"')
        return f"{type(error).__name__}: {text}" if isinstance(error, KeyError) else text
    return describeError(error)


_LISTENERS = {
    "muxpool.listeners.Forward": (Forward, lambda props, reactor, registry: Forward.fromProperties(
        props, registry.getMUX, reactor)),
    "muxpool.listeners.Responder": (Responder, lambda props, reactor, registry:
                                    Responder.fromProperties(props, reactor)),
}


def listenerClass(cls: str):
    """
    The class (or factory) a C{request-listener class} names: a built-in,
    or any dotted path.

    @raise ValueError: naming what is known.
    """
    if cls in _LISTENERS:
        return _LISTENERS[cls][0]
    if "." not in cls:
        raise ValueError(f"unknown class (known: {', '.join(sorted(_LISTENERS))})")
    try:
        return importNamed(cls)
    except NoSuchModule:
        raise ValueError(
            f"unknown class (known: {', '.join(sorted(_LISTENERS))}, or a dotted path "
            "to an IRequestListener)"
        ) from None
    except NoSuchName as e:
        raise ValueError(str(e)) from None


def makeListener(cls: str, props: Mapping[str, str], reactor, registry) -> IRequestListener:
    """
    A request listener by dotted path: the built-ins, or any class with a
    C{fromProperties(properties)} class method, or whose constructor takes
    the properties dict.
    """
    if cls in _LISTENERS:
        return _LISTENERS[cls][1](props, reactor, registry)
    factory = listenerClass(cls)
    if hasattr(factory, "fromProperties"):
        listener = factory.fromProperties(props)
    elif isinstance(factory, type) and len(inspect.signature(factory).parameters) >= 1:
        listener = factory(props)
    else:
        listener = factory()
    if not IRequestListener.providedBy(listener):
        raise TypeError("does not provide IRequestListener")
    return listener


@implementer(IRequestListener)
class UnhandledByName:
    """
    A QMUX's C{<unhandled>} naming something registered (an
    L{IRequestListener} or a callable given the message), looked up when a
    message comes, so deploy order does not matter.
    """

    log = Logger()

    def __init__(self, name: str, registry, clock=None) -> None:
        self.name = name
        self.registry = registry
        self._limiter = RateLimiter(clock=clock)

    def process(self, source, message) -> bool:
        target = self.registry.lookup(self.name)
        if IRequestListener.providedBy(target):
            return bool(target.process(source, message))
        if callable(target):
            target(message)
            return True
        self._limiter.emit(self.log.warn, "missing",
                           "unhandled messages go nowhere: nothing named {name!r} is registered",
                           name=self.name)
        return False


def unhandledHandler(text: str, registry, clock=None):
    """
    What C{<unhandled>} names: a dotted path to an L{IRequestListener}
    class or object, or to a callable given the message; otherwise a name
    in C{registry} (see L{UnhandledByName}).
    """
    if "." in text and not text.startswith("org.jpos."):
        try:
            found = importNamed(text)
        except NoSuchModule:
            found = None  # a name in the registry, then
        except NoSuchName as e:
            raise ValueError(str(e)) from None
        if found is not None:
            if inspect.isclass(found):
                found = found.fromProperties({}) if hasattr(found, "fromProperties") else found()
            if IRequestListener.providedBy(found) or callable(found):
                return found
            raise TypeError(f"{text} is neither an IRequestListener nor callable")
    return UnhandledByName(text, registry, clock)


def kindOf(path: str, root: Node) -> str:
    classes = CLASSES.get(root.tag)
    if classes is None:
        raise DescriptorError(path, root.line, root.tag,
                              "unknown descriptor (known: channel-adaptor, mux, server)")
    cls = root.attrib.get("class")
    if cls not in classes:
        known = ", ".join(sorted(k for k in classes if k))
        raise DescriptorError(path, root.line, root.tag, f"unknown class {cls!r} (known: {known})")
    return classes[cls]


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
    reader = _Reader(path, root)
    reader.sockets = sockets
    reader.refuseWireChanges(root)
    reader.warnUnknown(root, KNOWN[kind])
    bean = _BUILDERS[kind](reader, name, root, reactor, registry)
    bean.references.extend(reader.references)
    return bean


def serverEndpoint(root: Node) -> Optional[str]:
    """
    The endpoint a C{<server>} descriptor listens on (an C{endpoint}
    property, or its port and C{bind-address}), without building it; None
    if it names neither.
    """
    props = {p.attrib.get("name"): p.attrib.get("value", "").strip() for p in root.all("property")}
    if props.get("endpoint"):
        return props["endpoint"]
    for attr in root.all("attr"):
        if attr.attrib.get("name") == "port" and attr.text.strip().isdigit():
            return tcpEndpoint(int(attr.text.strip()), props.get("bind-address"))
    return None


def dependenciesOf(path: str, root: Optional[Node]) -> List[str]:
    """
    The files a descriptor's bean is built from: the descriptor, the
    packager files and the Python modules of the classes it names.  A file
    that failed to deploy is tried again when any of them changes.
    """
    files = [path]
    if root is None:
        return files
    reader = _Reader(path, root)

    def walk(node: Node):
        yield node
        for child in node.children:
            yield from walk(child)

    for node in walk(root):
        names = [node.attrib.get("class"), node.attrib.get("packager")]
        if node.tag == "unhandled":
            names.append(node.text.strip())
        if node.tag == "property" and node.attrib.get("name") == "packager-config":
            files.append(os.path.abspath(reader.beside(node.attrib.get("value", ""))))
        for name in names:
            source = _moduleFile(name)
            if source is not None:
                files.append(source)
    return files


def _moduleFile(dotted: Optional[str]) -> Optional[str]:
    """
    The source file of the module a dotted class path is in, without
    running it; None for jPOS names, muxpool's own, and what is not found.
    """
    if not dotted or "." not in dotted or dotted.startswith(("org.jpos.", "muxpool.")):
        return None
    module = dotted.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(module)
    except Exception:
        return None
    origin = getattr(spec, "origin", None)
    return origin if origin and os.path.exists(origin) else None


def _adaptor(reader: _Reader, name, root, reactor, registry) -> Bean:
    reader.properties(root, PROPERTIES["channel-adaptor"])
    spec, props = reader.channel(root, ADAPTOR_CHANNEL_PROPERTIES)

    def ms(text, what, default=None):
        value = reader.number(root, text, what)
        return default if value is None else value / 1000.0

    endpoint = props.get("endpoint")
    host, port = props.get("host"), props.get("port")
    if not endpoint and not (host and port):
        raise reader.error(root.child("channel"), "needs host and port properties, or an endpoint")
    port = reader.number(root.child("channel"), port, "port", cast=int)
    timeout = ms(props.get("timeout"), "timeout")
    connectTimeout = ms(props.get("connect-timeout"), "connect-timeout", timeout)
    reconnect = ms(root.childText("reconnect-delay"), "reconnect-delay", 10.0)
    try:
        clientTLS = ClientTLS.fromProperties(reader.files(props), host)
        adaptor = ChannelAdaptor(
            name, spec, endpoint or None, reactor,
            host=host, port=port,
            connectTimeout=connectTimeout or None,
            reconnectDelay=reconnect,
            maxReconnectDelay=ms(root.childText("max-reconnect-delay"), "max-reconnect-delay"),
            idleTimeout=timeout or None,
            keepAlive=flag(root.childText("keep-alive")),
            tcpKeepAlive=flag(props.get("keep-alive")),
            signOn=flag(root.childText("sign-on")),
            echoInterval=ms(root.childText("echo-interval"), "echo-interval"),
            echoTimeout=ms(root.childText("echo-timeout"), "echo-timeout", 10.0),
            tls=clientTLS,
        )
    except ValueError as e:
        raise reader.error(root.child("channel"), str(e)) from None
    return Bean(name, "channel-adaptor", adaptor, reader.path,
                inQueue=root.childText("in"), outQueue=root.childText("out"))


def _qmux(reader: _Reader, name, root, reactor, registry) -> Bean:
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
            raise reader.error(node, f"{node.text.strip()!r}: {_problem(e)}") from None
        if isinstance(unhandled, UnhandledByName):
            reader.references.append(Reference(
                "unhandled handler", unhandled.name, node.line, node.tag,
                "unhandled messages are only counted and logged until it is"))
    mux = QMUX(
        name, None, reactor,
        KeyBuilder(fields, overrides, mapping or None),
        ignoreRC=parseFieldList(root.childText("ignore-rc") or ""),
        returnRejects=flag(props.get("return-rejects")),
        listeners=reader.listeners(root, reactor, registry),
        unhandled=unhandled,
    )
    inQueue, outQueue = root.childText("in"), root.childText("out")
    ready = parseFieldList(root.childText("ready") or "")
    if not outQueue and not ready:
        raise reader.error(root, "missing required element <out> (or <ready>): which channel?")
    return Bean(name, "qmux", mux, reader.path, inQueue=inQueue, outQueue=outQueue,
                readyNames=ready)


def _pool(reader: _Reader, name, root, reactor, registry) -> Bean:
    members = parseFieldList(root.childText("muxes") or "")
    if not members:
        raise reader.error(root, "missing required element <muxes>")
    props = reader.properties(root, PROPERTIES["pool"])
    config = {
        "follower-override": root.childText("follower-override") or "",
        "original-channel-field": root.childText("original-channel-field") or "",
        "split-field": root.childText("split-field") or "",
        "weights": root.childText("weights") or props.get("weights", ""),
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
    suspend = reader.number(root.child("suspend-after-timeouts") or root,
                            root.childText("suspend-after-timeouts"), "suspend-after-timeouts",
                            0, int)
    checkEnabled = flag(root.childText("check-enabled", props.get("check-enabled")))
    pool = MUXPool(name, [], reactor, strategy, checkEnabled=checkEnabled, fallback=fallback,
                   suspendAfterTimeouts=suspend)
    return Bean(name, "pool", pool, reader.path, memberNames=members)


def _server(reader: _Reader, name, root, reactor, registry) -> Bean:
    spec, channelProps = reader.channel(root, SERVER_CHANNEL_PROPERTIES)
    attrs = {}
    for attr in root.all("attr"):
        attrName = attr.attrib.get("name", "")
        if attrName not in SERVER_ATTRS:
            reader.warn(attr, f"unknown attr {attrName!r} ignored (known: {', '.join(sorted(SERVER_ATTRS))})")
        elif attrName in IGNORED_SERVER_ATTRS:
            continue
        attrs[attrName] = (attr, attr.text.strip())
    props = reader.properties(root, PROPERTIES["server"])
    endpoint = props.get("endpoint")
    port = None
    if "port" in attrs:
        port = reader.number(attrs["port"][0], attrs["port"][1], "port", cast=int)
    if endpoint is None and port is None:
        raise reader.error(root, "missing required <attr name=\"port\"> (or an endpoint property)")
    maxSessions = None
    if "maxSessions" in attrs:
        maxSessions = reader.number(attrs["maxSessions"][0], attrs["maxSessions"][1],
                                    "maxSessions", cast=int)

    def ms(text, what, default):
        return reader.number(root, text, what, default * 1000.0) / 1000.0

    # jPOS's channel timeout is the read timeout of each accepted channel.
    idle = ms(channelProps.get("timeout", props.get("idle-timeout")), "idle-timeout", 300.0)
    try:
        serverTLS = ServerTLS.fromProperties(reader.files(props))
        server = QServer(
            name, spec, endpoint, reactor, port=port,
            bindAddress=props.get("bind-address"),
            maxSessions=maxSessions,
            allow=props.get("allow"), deny=props.get("deny"),
            listeners=reader.listeners(root, reactor, registry),
            gracePeriod=ms(props.get("grace-period"), "grace-period", 5.0),
            maxInFlight=reader.number(root, props.get("max-in-flight"), "max-in-flight", 128, int),
            idleTimeout=idle or None,
            frameTimeout=ms(props.get("frame-timeout"), "frame-timeout", 10.0) or None,
            signOffOnStop=flag(props.get("sign-off-on-stop")),
            signOffTimeout=ms(props.get("sign-off-timeout"), "sign-off-timeout", 1.0),
            listenerErrorCode=props.get("listener-error-code", "96"),
            tls=serverTLS,
            sockets=reader.sockets,
        )
    except ValueError as e:
        raise reader.error(root, str(e)) from None
    return Bean(name, "server", server, reader.path)


_BUILDERS: Dict[str, Callable] = {
    "channel-adaptor": _adaptor,
    "qmux": _qmux,
    "pool": _pool,
    "server": _server,
}
