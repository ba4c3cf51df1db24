"""
L{DescriptorReader}: reads one descriptor's elements, properties and
numbers, turning every problem into a L{DescriptorError} naming the file,
the line and the element.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Tuple, overload

from twisted.logger import Logger

from muxpool._config import milliseconds
from muxpool._support import describeError
from muxpool.channel import ChannelSpec
from muxpool.deploy._bean import Reference
from muxpool.deploy._listeners import listenerClass, makeListener, problemOf
from muxpool.deploy._schema import (
    CHANNEL_ATTRIBUTES,
    CHANNEL_ELEMENTS,
    IGNORED_ATTRIBUTES,
    IGNORED_ELEMENTS,
    WIRE_ELEMENTS,
    WIRE_PROPERTIES,
)
from muxpool.deploy._xml import DescriptorError, Node
from muxpool.interfaces import IRequestListener
from muxpool.listeners import Forward

log = Logger()


def beside(descriptor: str, relative: str) -> str:
    """
    A path a descriptor gives, looked up beside the descriptor if it is
    relative and exists there.
    """
    if os.path.isabs(relative):
        return relative
    candidate = os.path.join(os.path.dirname(descriptor), relative)
    return candidate if os.path.exists(candidate) else relative


class DescriptorReader:
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
        log.warn(
            "{path}:{line}: <{tag}>: {problem}",
            path=self.path,
            line=node.line,
            tag=node.tag,
            problem=problem,
        )

    def refuseWireChanges(self, node: Node) -> None:
        """
        Refuse a bean whose descriptor asks for something that changes the
        wire and that muxpool does not do: better not deployed than wrong.
        """
        for child in node.children:
            why = WIRE_ELEMENTS.get(child.tag)
            if why is not None:
                raise self.error(
                    child,
                    f"not supported: {why}; refusing to deploy this bean "
                    "rather than run without it",
                )
            self.refuseWireChanges(child)
        if node.tag == "property" and node.attrib.get("name") in WIRE_PROPERTIES:
            raise self.error(
                node,
                f"property {node.attrib['name']!r} is not supported: "
                f"{WIRE_PROPERTIES[node.attrib['name']]}; refusing to deploy",
            )
        for attr in node.attrib:
            if attr in WIRE_PROPERTIES and node.tag in ("channel", "server", "attr"):
                raise self.error(node, f"{attr!r} is not supported: {WIRE_PROPERTIES[attr]}")
        if node.tag == "attr" and node.attrib.get("name") in WIRE_PROPERTIES:
            raise self.error(
                node,
                f"attr {node.attrib['name']!r} is not supported: "
                f"{WIRE_PROPERTIES[node.attrib['name']]}",
            )

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
                self.warn(
                    p,
                    f"unknown property {name!r} ignored"
                    f" (known: {', '.join(sorted(known)) or 'none'})",
                )
            props[name] = p.attrib.get("value", p.attrib.get("file", "")).strip()
        return props

    def number(self, node: Node, text: Optional[str], what: str, default=None, cast=float):
        if text is None or text == "":
            return default
        try:
            return cast(text.strip())
        except ValueError:
            raise self.error(node, f"bad number for {what}: {text!r}") from None

    def childNumber(self, root: Node, element: str, default=None, cast=float):
        """
        The number in C{root}'s child C{<element>}, or C{default} if it is
        absent; an error names that child's line.
        """
        return self.number(
            root.child(element) or root, root.childText(element), element, default, cast
        )

    @overload
    def milliseconds(
        self, text: Optional[str], what: str, default: float, node: Optional[Node] = None
    ) -> float: ...

    @overload
    def milliseconds(
        self, text: Optional[str], what: str, default: None = None, node: Optional[Node] = None
    ) -> Optional[float]: ...

    def milliseconds(
        self,
        text: Optional[str],
        what: str,
        default: Optional[float] = None,
        node: Optional[Node] = None,
    ) -> Optional[float]:
        """
        A duration the descriptor gives in milliseconds, in seconds;
        C{default} (in seconds) when it gives none.  A bad number is an
        error naming C{node} (the root element by default).
        """
        try:
            return milliseconds(text, default)
        except ValueError:
            raise self.error(node or self.root, f"bad number for {what}: {text!r}") from None

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
                cls,
                channel.attrib.get("packager", "ISO87A"),
                channel.attrib.get("header"),
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
        return {
            k: (
                self.beside(v)
                if k.startswith("tls-") and k.endswith(("-ca", "-cert", "-key"))
                else v
            )
            for k, v in props.items()
        }

    def beside(self, relative: str) -> str:
        return beside(self.path, relative)

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
                raise self.error(element, f"request listener {cls!r}: {problemOf(e)}") from None
            if isinstance(listener, Forward):
                self.references.append(
                    Reference(
                        "MUX",
                        listener.muxName,
                        element.line,
                        element.tag,
                        f"requests are declined 39={listener.notSentCode} until it is",
                    )
                )
            out.append(listener)
        return out
