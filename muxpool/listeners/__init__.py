"""
Request listeners: what handles inbound requests.

L{offer} runs a chain of listeners the way jPOS does (the first that handles
a message stops the chain).  L{Forward} sends each request through a named
MUX and answers with the response; L{Responder} is a small issuer simulator
for demos and tests.  L{decline} is the answer a switch gives on its own,
carrying no card data.
"""

from muxpool.listeners._chain import ListenerFailed, offer
from muxpool.listeners._decline import DECLINE_FIELDS, decline, sendAnswer
from muxpool.listeners._forward import Forward
from muxpool.listeners._responder import ECHOED_FIELDS, Responder

__all__ = [
    "DECLINE_FIELDS",
    "ECHOED_FIELDS",
    "Forward",
    "ListenerFailed",
    "Responder",
    "decline",
    "offer",
    "sendAnswer",
]
