"""
What each kind of descriptor accepts: its elements, attributes and
properties, what jPOS users carry that means nothing here, and what would
change the wire and so is refused.
"""

from __future__ import annotations

from typing import Dict, Optional

from muxpool.channel import CLIENT_PROPERTIES, SERVER_PROPERTIES
from muxpool.deploy._xml import DescriptorError, Node

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
CHANNEL_PROPERTIES = {
    "packager-config",
    "max-packet-length",
    "length-digits",
    "tpdu-swap",
    "srcid",
    "dstid",
    "timeout",
}
ADAPTOR_CHANNEL_PROPERTIES = (
    CHANNEL_PROPERTIES
    | {"host", "port", "endpoint", "connect-timeout", "keep-alive"}
    | CLIENT_PROPERTIES
)
SERVER_CHANNEL_PROPERTIES = CHANNEL_PROPERTIES
#: Properties of the bean itself.
PROPERTIES = {
    "channel-adaptor": set(),
    "qmux": {"return-rejects"},
    "pool": {"check-enabled", "weights"},
    "server": {
        "endpoint",
        "bind-address",
        "allow",
        "deny",
        "grace-period",
        "listener-error-code",
        "max-in-flight",
        "idle-timeout",
        "frame-timeout",
        "sign-off-on-stop",
        "sign-off-timeout",
        "stop-quiet",
        "proxy-protocol",
        "proxy-from",
    }
    | SERVER_PROPERTIES,
}
#: <attr name="..."> of a server (minSessions sizes jPOS's thread pool).
SERVER_ATTRS = {"port", "maxSessions", "minSessions"}
IGNORED_SERVER_ATTRS = {"minSessions"}

KNOWN = {
    "channel-adaptor": {
        "channel",
        "in",
        "out",
        "reconnect-delay",
        "max-reconnect-delay",
        "keep-alive",
        "sign-on",
        "echo-interval",
        "echo-timeout",
        "property",
    },
    "qmux": {
        "in",
        "out",
        "ready",
        "unhandled",
        "key",
        "mtimapping",
        "ignore-rc",
        "unmatched-limit",
        "max-in-flight",
        "request-listener",
        "property",
    },
    "pool": {
        "muxes",
        "strategy",
        "follower-override",
        "original-channel-field",
        "split-field",
        "strategy-handler",
        "weights",
        "suspend-after-timeouts",
        "max-unanswered",
        "consecutive-timeouts",
        "consecutive-codes",
        "outlier-codes",
        "ejection-time",
        "max-ejection-time",
        "max-ejection-percent",
        "decay-time",
        "max-in-flight",
        "check-enabled",
        "property",
    },
    "server": {"attr", "channel", "request-listener", "property"},
}

#: The C{class} a descriptor may give each root element: jPOS's, this
#: project's dotted paths (those of earlier releases too), or none.
CLASSES: Dict[str, Dict[Optional[str], str]] = {
    "channel-adaptor": dict.fromkeys(
        (
            None,
            "org.jpos.q2.iso.ChannelAdaptor",
            "muxpool.ChannelAdaptor",
            "muxpool.link.ChannelAdaptor",
            "muxpool.adaptor.ChannelAdaptor",
        ),
        "channel-adaptor",
    ),
    "mux": {
        **dict.fromkeys((None, "org.jpos.q2.iso.QMUX", "muxpool.QMUX", "muxpool.mux.QMUX"), "qmux"),
        **dict.fromkeys(
            (
                "org.jpos.q2.iso.MUXPool",
                "muxpool.MUXPool",
                "muxpool.mux.MUXPool",
                "muxpool.pool.MUXPool",
            ),
            "pool",
        ),
    },
    "server": dict.fromkeys(
        (
            None,
            "org.jpos.q2.iso.QServer",
            "muxpool.QServer",
            "muxpool.link.QServer",
            "muxpool.server.QServer",
        ),
        "server",
    ),
}


def kindOf(path: str, root: Node) -> str:
    classes = CLASSES.get(root.tag)
    if classes is None:
        raise DescriptorError(
            path, root.line, root.tag, "unknown descriptor (known: channel-adaptor, mux, server)"
        )
    cls = root.attrib.get("class")
    if cls not in classes:
        known = ", ".join(sorted(k for k in classes if k))
        raise DescriptorError(path, root.line, root.tag, f"unknown class {cls!r} (known: {known})")
    return classes[cls]
