"""
muxpool: jPOS-style high availability for ISO 8583 links, on Twisted.

The parts, bottom up: packagers (L{getPackager}), framings and the channel
protocol (L{ChannelSpec}), links (L{ChannelAdaptor}, L{QServer}), L{QMUX},
L{MUXPool} with its strategies, request listeners (L{Forward},
L{Responder}), and the deploy directory (L{DeployService}).  Every request
ends with a response, L{NotSent} or L{OutcomeUnknown}.
"""

from muxpool.adaptor import ChannelAdaptor
from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.deploy import DeployService
from muxpool.errors import (
    AnswerUndelivered,
    CancelledAfterWrite,
    CancelledBeforeWrite,
    DuplicateKey,
    EncodeFailed,
    LinkLost,
    LinkNotReady,
    MissingKey,
    NoMUXAvailable,
    NotSent,
    OutcomeUnknown,
    RequestCancelled,
    RequestError,
    RequestTimeout,
    StrategyFailed,
)
from muxpool.listeners import Forward, Responder
from muxpool.masking import maskMessage
from muxpool.mux import KeyBuilder, QMUX
from muxpool.packagers import getPackager, loadGenericPackager, registerPackager
from muxpool.pool import MUXPool
from muxpool.registry import Registry, defaultRegistry
from muxpool.server import QServer
from muxpool.strategies import strategyByName, strategyByPath

__version__ = "0.1.0"

__all__ = [
    "ChannelAdaptor", "ChannelSpec", "ISOChannelProtocol", "DeployService",
    "DuplicateKey", "EncodeFailed", "LinkLost", "LinkNotReady", "MissingKey",
    "NoMUXAvailable", "NotSent", "OutcomeUnknown", "RequestError", "RequestTimeout",
    "AnswerUndelivered", "CancelledAfterWrite", "CancelledBeforeWrite", "RequestCancelled",
    "StrategyFailed",
    "Forward", "Responder", "maskMessage", "KeyBuilder", "QMUX", "getPackager",
    "loadGenericPackager", "registerPackager", "MUXPool", "Registry",
    "defaultRegistry", "QServer", "strategyByName", "strategyByPath",
]
