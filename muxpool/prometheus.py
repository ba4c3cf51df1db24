"""
Prometheus metrics, read from the beans at each scrape (nothing is counted
twice): counters and gauges per MUX, pool, channel and server, and latency
histograms per MUX and pool, named as Prometheus expects
(C{muxpool_..._total}, seconds).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Union

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from muxpool.adaptor import ChannelAdaptor
from muxpool.mux import QMUX
from muxpool.operations import Operations
from muxpool.pool import MUXPool
from muxpool.server import QServer

__all__ = ["CONTENT_TYPE_LATEST", "MetricsCollector", "metricsText"]

#: name -> (help, counter key) for each QMUX counter exported.
MUX_COUNTERS = {
    "requests": ("Requests written (jPOS tx).", "tx"),
    "responses": ("Responses matched to a request (jPOS rx).", "rx"),
    "not_sent_expired": ("Requests whose link was not ready before their deadline (jPOS "
                         "tx_expired).", "tx_expired"),
    "outcome_unknown": ("Requests written and not answered: timed out, link lost or cancelled "
                        "(jPOS rx_expired).", "rx_expired"),
    "unhandled": ("Messages no request or listener took (jPOS rx_unhandled).", "rx_unhandled"),
    "forwarded": ("Unmatched messages offered to request listeners (jPOS rx_forwarded).",
                  "rx_forwarded"),
    "late": ("Responses that came after their request timed out.", "rx_late"),
    "ignored": ("Responses ignored for their response code (ignore-rc).", "rx_ignored"),
}
CHANNEL_COUNTERS = ("connects", "disconnects", "connect_failures", "echo_failures",
                    "sign_on_failures", "idle_timeouts")
SERVER_COUNTERS = ("accepted", "refused", "rx", "rx_unhandled", "listener_errors", "undelivered",
                   "tls_refused")


def _histogram(name: str, help: str, label: str,
               beans: Iterable[Union[QMUX, MUXPool]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help, labels=[label])
    for bean in beans:
        latency = bean.latency
        family.add_metric([bean.name], latency.histogram(), latency.total)
    return family


class MetricsCollector:
    """
    A prometheus_client collector over the beans L{Operations} sees.
    """

    def __init__(self, operations: Operations) -> None:
        self.operations = operations

    def collect(self) -> Iterator:
        objects = self.operations._objects()
        muxes = [o for o in objects if isinstance(o, QMUX)]
        pools = [o for o in objects if isinstance(o, MUXPool)]
        channels = [o for o in objects if isinstance(o, ChannelAdaptor)]
        servers = [o for o in objects if isinstance(o, QServer)]

        for name, (help, key) in MUX_COUNTERS.items():
            family: Union[CounterMetricFamily, GaugeMetricFamily]
            family = CounterMetricFamily(f"muxpool_mux_{name}", help, labels=["mux"])
            for mux in muxes:
                family.add_metric([mux.name], mux.counters[key])
            yield family
        for name, help, value in (
                ("muxpool_mux_in_flight", "Requests pending: waiting for the link or written.",
                 lambda m: m.pendingCount()),
                ("muxpool_mux_connected", "1 while the MUX's link is ready.",
                 lambda m: int(m.isConnected()))):
            family = GaugeMetricFamily(name, help, labels=["mux"])
            for mux in muxes:
                family.add_metric([mux.name], value(mux))
            yield family
        yield _histogram("muxpool_mux_request_duration_seconds",
                         "Time from request to matched response.", "mux", muxes)

        requests = CounterMetricFamily("muxpool_pool_requests", "Requests given to each member.",
                                       labels=["pool", "member"])
        usable = GaugeMetricFamily("muxpool_pool_member_usable",
                                   "1 while the member is usable (up, enabled, not suspended).",
                                   labels=["pool", "member"])
        for pool in pools:
            for member in pool.members:
                requests.add_metric([pool.name, member.name],
                                    pool.counters["requests"].get(member.name, 0))
                usable.add_metric([pool.name, member.name], int(pool.isUsable(member)))
        yield requests
        yield usable
        for key, help in (("no_mux", "Requests no member was usable for before the deadline."),
                          ("retries", "Requests tried on another member after a not-sent."),
                          ("suspensions", "Members taken out after timeouts in a row.")):
            family = CounterMetricFamily(f"muxpool_pool_{key}", help, labels=["pool"])
            for pool in pools:
                family.add_metric([pool.name], pool.counters[key])
            yield family
        inFlight = GaugeMetricFamily("muxpool_pool_in_flight", "Requests in flight through the pool.",
                                     labels=["pool"])
        for pool in pools:
            inFlight.add_metric([pool.name], pool.pendingCount())
        yield inFlight
        yield _histogram("muxpool_pool_request_duration_seconds",
                         "Time from request to response through the pool, waiting included.",
                         "pool", pools)

        for key in CHANNEL_COUNTERS:
            family = CounterMetricFamily(f"muxpool_channel_{key}", f"Channel {key.replace('_', ' ')}.",
                                         labels=["channel"])
            for channel in channels:
                family.add_metric([channel.name], channel.counters[key])
            yield family
        ready = GaugeMetricFamily("muxpool_channel_ready", "1 while the channel is ready.",
                                  labels=["channel"])
        for channel in channels:
            ready.add_metric([channel.name], int(bool(channel.ready)))
        yield ready

        for key in SERVER_COUNTERS:
            family = CounterMetricFamily(f"muxpool_server_{key}", f"Server {key.replace('_', ' ')}.",
                                         labels=["server"])
            for server in servers:
                family.add_metric([server.name], server.counters[key])
            yield family
        for name, help, value in (
                ("muxpool_server_sessions", "Sessions open.", lambda s: len(s.sessions)),
                ("muxpool_server_in_flight", "Requests read and not yet answered.",
                 lambda s: s.inFlight())):
            family = GaugeMetricFamily(name, help, labels=["server"])
            for server in servers:
                family.add_metric([server.name], value(server))
            yield family


def metricsText(operations: Operations) -> bytes:
    """
    The Prometheus text exposition of everything L{Operations} sees.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(operations))
    return generate_latest(registry)
