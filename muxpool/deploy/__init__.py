"""
The deploy folder, as jPOS's Q2: XML descriptors in, running services out.

L{DeployService} deploys a folder of descriptors and keeps it deployed (hot
deploy: add, change, remove, rename); L{readDescriptor} parses one file
(with C{${VAR}} expansion) and L{buildBean} builds its service; every
problem is a L{DescriptorError} naming the file, the line and the element.
"""

from muxpool.deploy._bean import Bean, Reference
from muxpool.deploy._builders import buildBean
from muxpool.deploy._dependencies import dependenciesOf
from muxpool.deploy._folder import descriptorFiles, serverEndpoint
from muxpool.deploy._schema import CLASSES, kindOf
from muxpool.deploy._service import DeployService
from muxpool.deploy._xml import (
    MAX_DESCRIPTOR_BYTES,
    DescriptorError,
    Node,
    expand,
    readDescriptor,
)

__all__ = [
    "Bean",
    "MAX_DESCRIPTOR_BYTES",
    "CLASSES",
    "DeployService",
    "DescriptorError",
    "Node",
    "Reference",
    "buildBean",
    "dependenciesOf",
    "descriptorFiles",
    "expand",
    "kindOf",
    "readDescriptor",
    "serverEndpoint",
]
