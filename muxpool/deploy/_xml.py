"""
Reading a descriptor: XML with line numbers kept for errors, and
C{${NAME}} / C{${NAME:default}} expanded from the environment as jPOS's
Environment does.
"""

from __future__ import annotations

import os
import re
import xml.parsers.expat
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple


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


#: The largest descriptor read, in bytes: a jPOS descriptor is a few KB; a
#: larger file is refused before it is parsed, so no file holds up the
#: reactor for more than a moment.
MAX_DESCRIPTOR_BYTES = 1024 * 1024


class _Refused(Exception):
    """
    A construct the reader does not take (a DOCTYPE, an entity), at a line.
    """

    def __init__(self, line: int, problem: str) -> None:
        Exception.__init__(self, problem)
        self.line = line
        self.problem = problem


def readSource(path: str) -> bytes:
    """
    The bytes of the descriptor at C{path}, at most L{MAX_DESCRIPTOR_BYTES}.

    @raise DescriptorError: it cannot be read, or it is larger.
    """
    try:
        with open(path, "rb") as f:
            source = f.read(MAX_DESCRIPTOR_BYTES + 1)
    except OSError as e:
        raise DescriptorError(path, 0, "?", f"cannot read: {e.strerror}") from None
    _checkSize(path, source)
    return source


def _checkSize(path: str, source: bytes) -> None:
    if len(source) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(
            path,
            0,
            "?",
            f"larger than the {MAX_DESCRIPTOR_BYTES // 1024} KiB a descriptor may be; not read",
        )


def readDescriptor(
    path: str, env: Optional[Mapping[str, str]] = None, source: Optional[bytes] = None
) -> Node:
    """
    Parse C{path} (or C{source}, its bytes already read) into L{Node}s,
    expanding variables.  Linear in the file's size, which is bounded (see
    L{MAX_DESCRIPTOR_BYTES}); a DOCTYPE, entity declarations and external
    entities are refused, as defusedxml does (an entity bomb would
    otherwise expand without bound).

    @raise DescriptorError: malformed or refused XML, a file too large, or
        an unset variable.
    """
    env = os.environ if env is None else env
    if source is None:
        source = readSource(path)
    _checkSize(path, source)
    stack: List[Node] = []
    texts: List[List[str]] = []  # each open element's text, in pieces: joined once
    roots: List[Node] = []
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def start(tag, attrib):
        line = parser.CurrentLineNumber
        node = Node(tag, {k: expand(v, env, (path, line, tag)) for k, v in attrib.items()}, line)
        if stack:
            stack[-1].children.append(node)
        else:
            roots.append(node)
        stack.append(node)
        texts.append([])

    def end(tag):
        node = stack.pop()
        node.text = expand("".join(texts.pop()), env, (path, node.line, tag))

    def data(text):
        if texts:
            texts[-1].append(text)

    def refuse(what):
        def handler(*args):
            raise _Refused(parser.CurrentLineNumber, f"{what} is not allowed in a descriptor")

        return handler

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.StartDoctypeDeclHandler = refuse("a DOCTYPE")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity")
    try:
        parser.Parse(source, True)
    except _Refused as e:
        raise DescriptorError(path, e.line, "?", e.problem) from None
    except xml.parsers.expat.ExpatError as e:
        raise DescriptorError(
            path,
            e.lineno,
            "?",
            f"malformed XML: {xml.parsers.expat.errors.messages.get(e.code, e)}",
        ) from None
    if not roots:
        raise DescriptorError(path, 1, "?", "no element")
    return roots[0]
