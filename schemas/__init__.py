"""Everything that crosses a process boundary: events, snapshots, alerts, topic and key names.

Every event is JSON on the wire (``model_dump_json`` / ``model_validate_json``), carries a
``schema_version`` and is validated strictly at both ends.
"""

import logging

from ._types import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from .alerts import ALERT_STATES, AlertState, DegradationAlert
from .errors import OutrouteError
from .events import (
    FAILURE_CATEGORIES,
    OUTCOME_SOURCES,
    REASONS,
    DecisionEvent,
    FailureCategory,
    OutcomeEvent,
    OutcomeSource,
    Reason,
)
from .export import PUBLIC_EVENTS, export_json_schemas
from .internal import JoinedOutcome, JoinPosition, PathDelta
from .policy import PATH_STATUSES, PathStats, PathStatus, PolicySnapshot
from .settings import OutrouteSettings, redact_url
from .topics import PARTITIONER, RedisKeys, Topics, TopicSpec

# A library installs no handlers of its own: the application decides where logs go.
logging.getLogger("outroute").addHandler(logging.NullHandler())

__all__ = [
    "ALERT_STATES",
    "FAILURE_CATEGORIES",
    "OUTCOME_SOURCES",
    "PARTITIONER",
    "PATH_STATUSES",
    "PUBLIC_EVENTS",
    "REASONS",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AlertState",
    "DecisionEvent",
    "DegradationAlert",
    "FailureCategory",
    "JoinPosition",
    "JoinedOutcome",
    "OutcomeEvent",
    "OutcomeSource",
    "OutrouteError",
    "OutrouteSettings",
    "PathDelta",
    "PathStats",
    "PathStatus",
    "PolicySnapshot",
    "Reason",
    "RedisKeys",
    "TopicSpec",
    "Topics",
    "export_json_schemas",
    "redact_url",
]
