"""
The deploy folder as files: which descriptors it holds, and, without
building anything, the endpoint a server descriptor listens on (what the
workers' parent holds sockets for).
"""

from __future__ import annotations

import os
from typing import List, Optional

from muxpool._config import tcpEndpoint
from muxpool.deploy._xml import Node


def descriptorFiles(directory: str) -> List[str]:
    """
    The descriptors in C{directory} (C{*.xml}, not hidden), in deploy order
    (by name).

    @raise OSError: the folder cannot be read (it is gone, or the process
        has no file descriptor left): the caller must change nothing, not
        take it for an empty folder.
    """
    with os.scandir(directory) as entries:
        names = [e.name for e in entries if e.name.endswith(".xml") and not e.name.startswith(".")]
    return sorted(os.path.join(directory, name) for name in names)


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
