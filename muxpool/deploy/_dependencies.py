"""
What a descriptor's bean is built from, so a file that failed to deploy is
tried again when any of it changes.
"""

from __future__ import annotations

import importlib.util
import os
from typing import List, Optional

from muxpool.deploy._reader import beside
from muxpool.deploy._xml import Node


def dependenciesOf(path: str, root: Optional[Node]) -> List[str]:
    """
    The files a descriptor's bean is built from: the descriptor, the
    packager files and the Python modules of the classes it names.  A file
    that failed to deploy is tried again when any of them changes.
    """
    files = [path]
    if root is None:
        return files

    def walk(node: Node):
        yield node
        for child in node.children:
            yield from walk(child)

    for node in walk(root):
        names = [node.attrib.get("class"), node.attrib.get("packager")]
        if node.tag == "unhandled":
            names.append(node.text.strip())
        if node.tag == "property" and node.attrib.get("name") == "packager-config":
            files.append(os.path.abspath(beside(path, node.attrib.get("value", ""))))
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
