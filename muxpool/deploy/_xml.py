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


def readDescriptor(
    path: str, env: Optional[Mapping[str, str]] = None, source: Optional[bytes] = None
) -> Node:
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
        raise DescriptorError(
            path,
            e.lineno,
            "?",
            f"malformed XML: {xml.parsers.expat.errors.messages.get(e.code, e)}",
        ) from None
    except OSError as e:
        raise DescriptorError(path, 0, "?", f"cannot read: {e.strerror}") from None
    if not roots:
        raise DescriptorError(path, 1, "?", "no element")
    return roots[0]
