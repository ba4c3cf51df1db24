"""
One node, however many workers: with C{--workers N}, the parent serves the
node's one admin API and agent check.  Each worker serves its own admin API
on a private UNIX socket (L{WorkerAdmin}); the parent asks them all and
answers for the node: C{/status} merged (each entry labelled with its
worker), C{/metrics} summed, C{/ready} ready only if every worker is, and
every action (C{enable}, C{disable}, C{drain} of a MUX; C{/drain} and
C{/undrain} of the node) applied to every worker.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.logger import Logger
from twisted.web import http
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from muxpool.ops._node import Draining

#: Seconds the parent waits for a worker's admin API.
WORKER_TIMEOUT = 5.0

#: One worker's answer: its number, the HTTP status (None: it did not
#: answer) and the body (or why not).
Answer = Tuple[int, Optional[int], bytes]


@implementer(IAgentEndpointFactory)
class _Sockets:
    def __init__(self, admin: "WorkerAdmin") -> None:
        self.admin = admin

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        index = int(uri.host.decode("ascii").rsplit("-", 1)[1])
        return UNIXClientEndpoint(self.admin.reactor, self.admin.path(index), timeout=2)


class WorkerAdmin:
    """
    The workers' private admin APIs: worker k's on C{folder/worker-k.sock}.
    """

    log = Logger()

    def __init__(self, reactor: Any, folder: str, count: int, token: Optional[str]) -> None:
        self.reactor = reactor
        self.folder = folder
        self.count = count
        self.token = token
        self._agent = Agent.usingEndpointFactory(reactor, _Sockets(self))

    @property
    def endpoint(self) -> str:
        """
        The C{--admin} a worker is given (each adds its number: see tap).
        """
        return f"unix:{os.path.join(self.folder, 'worker.sock')}"

    def path(self, index: int) -> str:
        return os.path.join(self.folder, f"worker-{index}.sock")

    def call(self, index: int, method: bytes, path: bytes) -> Deferred:
        """
        Fires with worker C{index}'s L{Answer} (never fails).
        """
        headers = Headers()
        if self.token:
            headers.addRawHeader(b"authorization", b"Bearer " + self.token.encode())
        url = b"http://worker-%d%s" % (index, path)
        d = self._agent.request(method, url, headers)
        d.addCallback(
            lambda response: readBody(response).addCallback(
                lambda body: (index, response.code, body)
            )
        )
        d.addTimeout(WORKER_TIMEOUT, self.reactor)
        return d.addErrback(lambda f: (index, None, f.getErrorMessage().encode()))

    def callAll(self, method: bytes, path: bytes) -> Deferred:
        """
        Fires with every worker's L{Answer}, in worker order.
        """
        calls = [self.call(k, method, path) for k in range(1, self.count + 1)]
        return gatherResults(calls)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return {"error": body.decode("utf-8", "replace")}


class ParentNode(Draining):
    """
    The node's state as the parent sees it: its own drain (for the agent,
    while the workers still serve) and every worker's readiness.
    """

    def __init__(self, workers: WorkerAdmin) -> None:
        Draining.__init__(self)
        self.workers = workers

    def readiness(self) -> Deferred:
        """
        Fires with (ready, reason, session limit): ready only if every
        worker is; the limit is the workers' together.
        """
        if self.stopping or self.draining:
            from twisted.internet.defer import succeed

            return succeed((False, "stopping" if self.stopping else "draining", 0))

        def judge(answers: List[Answer]) -> Tuple[bool, str, int]:
            left = 0
            for index, code, body in answers:
                if code is None:
                    return False, f"worker {index} does not answer: {body.decode()}", 0
                state = _json(body)
                if code != http.OK:
                    return False, f"worker {index}: {state.get('reason', code)}", 0
                left += int(state.get("session_limit", 0))
            return True, "ready", left

        return self.workers.callAll(b"GET", b"/ready").addCallback(judge)

    def agentWord(self) -> Deferred:
        def word(state: Tuple[bool, str, int]) -> str:
            ready, _, left = state
            if self.draining or self.stopping:
                return "drain"
            return f"ready up maxconn:{max(1, left)}" if ready else "down"

        return self.readiness().addCallback(word)


def mergeStatus(answers: List[Answer], node: Dict[str, Any]) -> Dict[str, Any]:
    """
    One status for the node: every worker's MUXes, pools, channels and
    servers, each labelled with its C{worker}; the workers' own states.
    """
    merged: Dict[str, Any] = {"node": node, "workers": [], "time": None}
    for key in ("muxes", "pools", "channels", "servers"):
        merged[key] = []
    for index, code, body in answers:
        state: Dict[str, Any] = (
            _json(body) if code == http.OK else {"error": body.decode("utf-8", "replace")}
        )
        worker: Dict[str, Any] = {"worker": index}
        worker.update((k, state[k]) for k in ("node", "error") if k in state)
        merged["workers"].append(worker)
        for key in ("muxes", "pools", "channels", "servers"):
            merged[key] += [dict(entry, worker=index) for entry in state.get(key, [])]
        merged["time"] = state.get("time", merged["time"])
        if "deploy" in state and "deploy" not in merged:
            merged["deploy"] = state["deploy"]
    return merged


def sumMetrics(texts: List[str]) -> str:
    """
    The workers' Prometheus texts as one: each series summed over the
    workers (counters, gauges and histograms all add up).
    """
    families: Dict[str, Tuple[str, str, Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            kind, helpText, samples = families.setdefault(
                family.name, (family.type, family.documentation, {})
            )
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = samples.get(key, 0.0) + sample.value
    lines = []
    for name, (kind, helpText, samples) in families.items():
        lines.append(f"# HELP {name} {helpText}")
        lines.append(f"# TYPE {name} {kind}")
        for (sampleName, labels), value in samples.items():
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(
                f"{sampleName}{{{shown}}} {value!r}" if shown else f"{sampleName} {value!r}"
            )
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


#: The admin API's paths the parent serves for the node.
PARENT_PATHS = (b"status", b"metrics", b"ready", b"live", b"drain", b"undrain", b"muxes")


class ParentResource(Resource):
    """
    One of the parent's admin paths (L{PARENT_PATHS}): the node's answer,
    made of its workers'.
    """

    isLeaf = True

    def __init__(self, node: ParentNode) -> None:
        Resource.__init__(self)
        self.node = node
        self.workers = node.workers

    def render(self, request: Any) -> Any:
        path = b"/" + b"/".join(request.prepath[-1:] + request.postpath)
        method = request.method
        if path == b"/live" and method == b"GET":
            return _answer(request, http.OK, {"live": True})
        if path == b"/ready" and method == b"GET":
            self.node.readiness().addCallback(self._ready, request)
            return NOT_DONE_YET
        if path == b"/status" and method == b"GET":
            self._status(request)
            return NOT_DONE_YET
        if path == b"/metrics" and method == b"GET":
            self.workers.callAll(b"GET", b"/metrics").addCallback(self._metrics, request)
            return NOT_DONE_YET
        if method == b"POST" and (path in (b"/drain", b"/undrain") or path.startswith(b"/muxes/")):
            if path == b"/drain":
                self.node.drain("POST /drain")
            elif path == b"/undrain":
                self.node.undrain()
            query = b"?" + request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
            self.workers.callAll(b"POST", path + query).addCallback(self._fannedOut, request)
            return NOT_DONE_YET
        return _answer(
            request,
            http.NOT_ALLOWED,
            {"error": f"{method.decode()} {path.decode()}: no such thing"},
        )

    def _ready(self, state: Tuple[bool, str, int], request: Any) -> None:
        ready, reason, left = state
        code = http.OK if ready else http.SERVICE_UNAVAILABLE
        _finish(request, code, {"ready": ready, "reason": reason, "session_limit": left})

    def _status(self, request: Any) -> None:
        def both(results: List[Any]) -> None:
            answers, (ready, reason, _) = results
            node = {"ready": ready, "reason": reason, "draining": self.node.draining}
            _finish(request, http.OK, mergeStatus(answers, node))

        gatherResults(
            [self.workers.callAll(b"GET", b"/status"), self.node.readiness()]
        ).addCallback(both)

    def _metrics(self, answers: List[Answer], request: Any) -> None:
        texts = [body.decode("utf-8") for _, code, body in answers if code == http.OK]
        if not request.finished and not request._disconnected:
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            request.write(sumMetrics(texts).encode("utf-8"))
            request.finish()

    def _fannedOut(self, answers: List[Answer], request: Any) -> None:
        codes = [code or http.SERVICE_UNAVAILABLE for _, code, _ in answers]
        worst = max(codes) if any(code != http.OK for code in codes) else http.OK
        _finish(
            request,
            worst,
            {
                "draining": self.node.draining,
                "workers": [
                    {"worker": k, "code": code, **_json(body)} for k, code, body in answers
                ],
            },
        )


def _answer(request: Any, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, indent=1).encode()


def _finish(request: Any, code: int, body: Any) -> None:
    if request.finished or request._disconnected:
        return  # the client went first
    request.write(_answer(request, code, body))
    request.finish()
