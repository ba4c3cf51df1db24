"""
muxpool: jPOS-style high availability for ISO 8583 links, on Twisted.

The parts, bottom up: the codec (L{muxpool.iso}: framings, packagers such
as L{getPackager}, masking), one connection (L{muxpool.channel}:
L{ChannelSpec}), request listeners (L{muxpool.listeners}: L{Forward},
L{Responder}), links (L{muxpool.link}: L{ChannelAdaptor}, L{QServer}),
request and response (L{muxpool.mux}: L{QMUX}, L{MUXPool} and its
strategies), the deploy folder (L{muxpool.deploy}: L{DeployService}) and
operations (L{muxpool.ops}).  Every request ends with a response,
L{NotSent} or L{OutcomeUnknown}.
"""

from muxpool._support import Readiness
from muxpool.channel import ChannelSpec, ClientTLS, ISOChannelProtocol, ServerTLS
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
    NoCapacity,
    NoMUXAvailable,
    NotSent,
    OutcomeUnknown,
    RequestCancelled,
    RequestError,
    RequestTimeout,
    StrategyFailed,
)
from muxpool.iso import getPackager, loadGenericPackager, maskMessage, registerPackager
from muxpool.link import AdaptorSettings, ChannelAdaptor, QServer, ServerSettings
from muxpool.listeners import Forward, Responder
from muxpool.mux import QMUX, KeyBuilder, MUXPool, strategyByName, strategyByPath
from muxpool.registry import Registry, defaultRegistry

__version__ = "0.1.0"

__all__ = [
    "AdaptorSettings",
    "AnswerUndelivered",
    "CancelledAfterWrite",
    "CancelledBeforeWrite",
    "ChannelAdaptor",
    "ChannelSpec",
    "ClientTLS",
    "DeployService",
    "DuplicateKey",
    "EncodeFailed",
    "Forward",
    "ISOChannelProtocol",
    "KeyBuilder",
    "LinkLost",
    "LinkNotReady",
    "MUXPool",
    "MissingKey",
    "NoCapacity",
    "NoMUXAvailable",
    "NotSent",
    "OutcomeUnknown",
    "QMUX",
    "QServer",
    "Readiness",
    "Registry",
    "RequestCancelled",
    "RequestError",
    "RequestTimeout",
    "Responder",
    "ServerSettings",
    "ServerTLS",
    "StrategyFailed",
    "defaultRegistry",
    "getPackager",
    "loadGenericPackager",
    "maskMessage",
    "registerPackager",
    "strategyByName",
    "strategyByPath",
]
