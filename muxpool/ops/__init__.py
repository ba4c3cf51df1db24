"""
Operating a switch: what an operator sees and does.

L{Operations} (every bean's status; enable, disable and drain a MUX in its
pools; the node's readiness and drain, L{NodeState}), the admin HTTP API
over it (L{AdminService}: status, Prometheus metrics, the status page,
C{/ready}, C{/live}, C{/drain}), HAProxy's agent check (L{AgentService}),
L{metricsText}, JSON-lines logs for a log
shipper (L{jsonLines}), and the admin client behind the CLI's C{status},
C{enable}, C{disable} and C{drain}.
"""

from muxpool.ops._admin import AdminConfigError, AdminResource, AdminService, checkEndpoint
from muxpool.ops._adminclient import addAdminArguments, renderStatus, runAdminCommand
from muxpool.ops._agent import AgentService
from muxpool.ops._logs import jsonLines
from muxpool.ops._node import NodeState
from muxpool.ops._operations import DrainTimeout, Operations, UnknownMUX
from muxpool.ops._prometheus import CONTENT_TYPE_LATEST, MetricsCollector, metricsText
from muxpool.ops._workers import PARENT_PATHS, ParentNode, ParentResource, WorkerAdmin

__all__ = [
    "PARENT_PATHS",
    "ParentNode",
    "ParentResource",
    "WorkerAdmin",
    "AdminConfigError",
    "AdminResource",
    "AdminService",
    "AgentService",
    "CONTENT_TYPE_LATEST",
    "DrainTimeout",
    "MetricsCollector",
    "NodeState",
    "Operations",
    "UnknownMUX",
    "addAdminArguments",
    "checkEndpoint",
    "jsonLines",
    "metricsText",
    "renderStatus",
    "runAdminCommand",
]
