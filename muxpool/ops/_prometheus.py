"""
Prometheus metrics, read from the beans at each scrape (nothing is counted
twice): counters and gauges per MUX, pool, channel and server, and latency
histograms per MUX and pool, named as Prometheus expects
(C{muxpool_..._total}, seconds).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Tuple, Type, Union

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from muxpool.link import ChannelAdaptor, QServer
from muxpool.mux import QMUX, MUXPool
from muxpool.ops._operations import Operations

__all__ = ["CONTENT_TYPE_LATEST", "MetricsCollector", "metricsText"]

#: name -> (help, counter key) for each QMUX counter exported.
MUX_COUNTERS = {
    "requests": ("Requests written (jPOS tx).", "tx"),
    "responses": ("Responses matched to a request (jPOS rx).", "rx"),
    "not_sent_expired": (
        "Requests whose link was not ready before their deadline (jPOS tx_expired).",
        "tx_expired",
    ),
    "outcome_unknown": (
        "Requests written and not answered: timed out, link lost or cancelled (jPOS rx_expired).",
        "rx_expired",
    ),
    "unhandled": ("Messages no request or listener took (jPOS rx_unhandled).", "rx_unhandled"),
    "forwarded": (
        "Unmatched messages offered to request listeners (jPOS rx_forwarded).",
        "rx_forwarded",
    ),
    "late": ("Responses that came after their request timed out.", "rx_late"),
    "ignored": ("Responses ignored for their response code (ignore-rc).", "rx_ignored"),
    "shed": ("Requests refused at once at max-in-flight (NoCapacity).", "shed"),
}
CHANNEL_COUNTERS = (
    "connects",
    "disconnects",
    "connect_failures",
    "echo_failures",
    "sign_on_failures",
    "idle_timeouts",
    "bad_frames",
    "resyncs",
)
SERVER_COUNTERS = (
    "accepted",
    "refused",
    "rx",
    "rx_unhandled",
    "listener_errors",
    "rx_refused",
    "undelivered",
    "tls_refused",
    "proxy_local",
)


Family = Union[CounterMetricFamily, GaugeMetricFamily]


def _family(
    kind: Type[Family],
    name: str,
    help: str,
    label: str,
    beans: Iterable[Any],
    value: Callable[[Any], float],
) -> Family:
    """
    One family C{muxpool_<label>_<name>} with one sample per bean, by name.
    """
    family = kind(f"muxpool_{label}_{name}", help, labels=[label])
    for bean in beans:
        family.add_metric([bean.name], value(bean))
    return family


def _counters(
    label: str, beans: Iterable[Any], counters: Iterable[Tuple[str, str, str]]
) -> Iterator[Family]:
    """
    A counter family per C{(name, help, key)}: C{bean.counters[key]}.
    """
    for name, help, key in counters:

        def value(bean: Any, key: str = key) -> float:
            return bean.counters[key]

        yield _family(CounterMetricFamily, name, help, label, beans, value)


def _histogram(
    name: str, help: str, label: str, beans: Iterable[Union[QMUX, MUXPool]]
) -> HistogramMetricFamily:
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
        objects = self.operations.beans()
        muxes = [o for o in objects if isinstance(o, QMUX)]
        pools = [o for o in objects if isinstance(o, MUXPool)]
        channels = [o for o in objects if isinstance(o, ChannelAdaptor)]
        servers = [o for o in objects if isinstance(o, QServer)]

        yield from _counters(
            "mux", muxes, ((name, help, key) for name, (help, key) in MUX_COUNTERS.items())
        )
        yield _family(
            GaugeMetricFamily,
            "in_flight",
            "Requests pending: waiting for the link or written.",
            "mux",
            muxes,
            lambda m: m.pendingCount(),
        )
        yield _family(
            GaugeMetricFamily,
            "connected",
            "1 while the MUX's link is ready.",
            "mux",
            muxes,
            lambda m: int(m.isConnected()),
        )
        yield _histogram(
            "muxpool_mux_request_duration_seconds",
            "Time from request to matched response.",
            "mux",
            muxes,
        )

        requests = CounterMetricFamily(
            "muxpool_pool_requests", "Requests given to each member.", labels=["pool", "member"]
        )
        usable = GaugeMetricFamily(
            "muxpool_pool_member_usable",
            "1 while the member is usable (up, enabled, not ejected).",
            labels=["pool", "member"],
        )
        for pool in pools:
            for member in pool.members:
                requests.add_metric(
                    [pool.name, member.name], pool.counters["requests"].get(member.name, 0)
                )
                usable.add_metric([pool.name, member.name], int(pool.isUsable(member)))
        yield requests
        yield usable
        yield from _counters(
            "pool",
            pools,
            (
                ("no_mux", "Requests no member was usable for before the deadline.", "no_mux"),
                ("retries", "Requests tried on another member after a not-sent.", "retries"),
                ("ejections", "Members ejected as outliers.", "ejections"),
                ("returns", "Ejected members back in rotation.", "returns"),
                ("panics", "Times too few members were usable and ejection was ignored.", "panics"),
                ("stalls", "Members skipped for holding max-unanswered requests.", "stalls"),
                ("shed", "Requests refused at once at max-in-flight (NoCapacity).", "shed"),
            ),
        )
        yield _family(
            GaugeMetricFamily,
            "in_flight",
            "Requests in flight through the pool.",
            "pool",
            pools,
            lambda p: p.pendingCount(),
        )
        yield _histogram(
            "muxpool_pool_request_duration_seconds",
            "Time from request to response through the pool, waiting included.",
            "pool",
            pools,
        )

        yield from _counters(
            "channel",
            channels,
            ((key, f"Channel {key.replace('_', ' ')}.", key) for key in CHANNEL_COUNTERS),
        )
        yield _family(
            GaugeMetricFamily,
            "ready",
            "1 while the channel is ready.",
            "channel",
            channels,
            lambda c: int(bool(c.ready)),
        )

        yield from _counters(
            "server",
            servers,
            ((key, f"Server {key.replace('_', ' ')}.", key) for key in SERVER_COUNTERS),
        )
        yield _family(
            GaugeMetricFamily,
            "sessions",
            "Sessions open.",
            "server",
            servers,
            lambda s: len(s.sessions),
        )
        yield _family(
            GaugeMetricFamily,
            "in_flight",
            "Requests read and not yet answered.",
            "server",
            servers,
            lambda s: s.inFlight(),
        )


def metricsText(operations: Operations) -> bytes:
    """
    The Prometheus text exposition of everything L{Operations} sees.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(operations))
    return generate_latest(registry)
