"""Python client of the DaaS orchestrator (``daas.v1.DesktopService``).

    from daas_client import Client

    with Client.from_files("https://daas.example.org:50051", "ca.pem", "alice.pem", "alice-key.pem") as daas:
        for event in daas.create_session():
            ...

The generated stubs are ``daas.v1.desktop_pb2`` / ``desktop_pb2_grpc``; the
message types a script meets are re-exported here.
"""

from daas.v1.desktop_pb2 import (
    Activity,
    Amounts,
    AuditEntry,
    Failure,
    IdleWarning,
    ListTemplatesResponse,
    Node,
    NodeState,
    OutputLine,
    OutputStream,
    Pool,
    Quota,
    Schedule,
    Session,
    SessionEvent,
    SessionState,
    Size,
    Snapshot,
    StageChange,
    Template,
    Tool,
)

from .client import Client, EventStream, StateLike, describe, parse_state, state_name
from .errors import (
    Aborted,
    DaasError,
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "Aborted",
    "Activity",
    "Amounts",
    "AuditEntry",
    "Client",
    "DaasError",
    "DeadlineExceeded",
    "EventStream",
    "Failure",
    "FieldViolation",
    "IdleWarning",
    "InvalidArgument",
    "ListTemplatesResponse",
    "Node",
    "NodeState",
    "NotFound",
    "OutputLine",
    "OutputStream",
    "PermissionDenied",
    "Pool",
    "Quota",
    "ResourceExhausted",
    "Schedule",
    "Session",
    "SessionEvent",
    "SessionState",
    "Size",
    "Snapshot",
    "StageChange",
    "StateLike",
    "Template",
    "Tool",
    "Unauthenticated",
    "Unavailable",
    "describe",
    "parse_state",
    "state_name",
]
