"""
The twistd plugin: C{twistd -n muxpool --deploy DIR}.
"""

from twisted.application.service import ServiceMaker

muxpool = ServiceMaker(
    "muxpool",
    "muxpool.tap",
    "ISO 8583 switch: jPOS-style channel adaptors, QMUX, MUXPool and QServer "
    "from a deploy folder of XML descriptors",
    "muxpool",
)
