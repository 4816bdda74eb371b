import datetime

from coder.tailnet.v2 import tailnet_pb2 as _tailnet_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetWorkspaceAgentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetWorkspaceAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: WorkspaceAgent
    def __init__(self, agent: _Optional[_Union[WorkspaceAgent, _Mapping]] = ...) -> None: ...

class GetConnectionInfoRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class GetConnectionInfoResponse(_message.Message):
    __slots__ = ("derp_map", "derp_force_websockets", "disable_direct_connections", "hostname_suffix")
    DERP_MAP_FIELD_NUMBER: _ClassVar[int]
    DERP_FORCE_WEBSOCKETS_FIELD_NUMBER: _ClassVar[int]
    DISABLE_DIRECT_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_SUFFIX_FIELD_NUMBER: _ClassVar[int]
    derp_map: _tailnet_pb2.DERPMap
    derp_force_websockets: bool
    disable_direct_connections: bool
    hostname_suffix: str
    def __init__(self, derp_map: _Optional[_Union[_tailnet_pb2.DERPMap, _Mapping]] = ..., derp_force_websockets: _Optional[bool] = ..., disable_direct_connections: _Optional[bool] = ..., hostname_suffix: _Optional[str] = ...) -> None: ...

class WorkspaceAgent(_message.Message):
    __slots__ = ("id", "parent_id", "created_at", "updated_at", "first_connected_at", "last_connected_at", "disconnected_at", "started_at", "ready_at", "status", "lifecycle_state", "name", "resource_id", "instance_id", "architecture", "environment_variables", "operating_system", "logs_length", "logs_overflowed", "directory", "expanded_directory", "version", "api_version", "apps", "latency", "connection_timeout_seconds", "troubleshooting_url", "subsystems", "health", "display_apps", "log_sources", "scripts", "startup_script_behavior")
    class EnvironmentVariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LatencyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Latency
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Latency, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    READY_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    OPERATING_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    LOGS_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LOGS_OVERFLOWED_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    EXPANDED_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TROUBLESHOOTING_URL_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEMS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_APPS_FIELD_NUMBER: _ClassVar[int]
    LOG_SOURCES_FIELD_NUMBER: _ClassVar[int]
    SCRIPTS_FIELD_NUMBER: _ClassVar[int]
    STARTUP_SCRIPT_BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    parent_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    first_connected_at: _timestamp_pb2.Timestamp
    last_connected_at: _timestamp_pb2.Timestamp
    disconnected_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    ready_at: _timestamp_pb2.Timestamp
    status: str
    lifecycle_state: str
    name: str
    resource_id: str
    instance_id: str
    architecture: str
    environment_variables: _containers.ScalarMap[str, str]
    operating_system: str
    logs_length: int
    logs_overflowed: bool
    directory: str
    expanded_directory: str
    version: str
    api_version: str
    apps: _containers.RepeatedCompositeFieldContainer[App]
    latency: _containers.MessageMap[str, Latency]
    connection_timeout_seconds: int
    troubleshooting_url: str
    subsystems: _containers.RepeatedScalarFieldContainer[str]
    health: Health
    display_apps: _containers.RepeatedScalarFieldContainer[str]
    log_sources: _containers.RepeatedCompositeFieldContainer[LogSource]
    scripts: _containers.RepeatedCompositeFieldContainer[Script]
    startup_script_behavior: str
    def __init__(self, id: _Optional[str] = ..., parent_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disconnected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ..., lifecycle_state: _Optional[str] = ..., name: _Optional[str] = ..., resource_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., architecture: _Optional[str] = ..., environment_variables: _Optional[_Mapping[str, str]] = ..., operating_system: _Optional[str] = ..., logs_length: _Optional[int] = ..., logs_overflowed: _Optional[bool] = ..., directory: _Optional[str] = ..., expanded_directory: _Optional[str] = ..., version: _Optional[str] = ..., api_version: _Optional[str] = ..., apps: _Optional[_Iterable[_Union[App, _Mapping]]] = ..., latency: _Optional[_Mapping[str, Latency]] = ..., connection_timeout_seconds: _Optional[int] = ..., troubleshooting_url: _Optional[str] = ..., subsystems: _Optional[_Iterable[str]] = ..., health: _Optional[_Union[Health, _Mapping]] = ..., display_apps: _Optional[_Iterable[str]] = ..., log_sources: _Optional[_Iterable[_Union[LogSource, _Mapping]]] = ..., scripts: _Optional[_Iterable[_Union[Script, _Mapping]]] = ..., startup_script_behavior: _Optional[str] = ...) -> None: ...

class Health(_message.Message):
    __slots__ = ("healthy", "reason")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    reason: str
    def __init__(self, healthy: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Latency(_message.Message):
    __slots__ = ("latency_ms", "preferred")
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_FIELD_NUMBER: _ClassVar[int]
    latency_ms: float
    preferred: bool
    def __init__(self, latency_ms: _Optional[float] = ..., preferred: _Optional[bool] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("id", "url", "external", "slug", "display_name", "command", "icon", "subdomain", "subdomain_name", "sharing_level", "healthcheck", "health", "group", "hidden", "open_in", "tooltip", "statuses")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    SUBDOMAIN_FIELD_NUMBER: _ClassVar[int]
    SUBDOMAIN_NAME_FIELD_NUMBER: _ClassVar[int]
    SHARING_LEVEL_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    OPEN_IN_FIELD_NUMBER: _ClassVar[int]
    TOOLTIP_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    url: str
    external: bool
    slug: str
    display_name: str
    command: str
    icon: str
    subdomain: bool
    subdomain_name: str
    sharing_level: str
    healthcheck: Healthcheck
    health: str
    group: str
    hidden: bool
    open_in: str
    tooltip: str
    statuses: _containers.RepeatedCompositeFieldContainer[AppStatus]
    def __init__(self, id: _Optional[str] = ..., url: _Optional[str] = ..., external: _Optional[bool] = ..., slug: _Optional[str] = ..., display_name: _Optional[str] = ..., command: _Optional[str] = ..., icon: _Optional[str] = ..., subdomain: _Optional[bool] = ..., subdomain_name: _Optional[str] = ..., sharing_level: _Optional[str] = ..., healthcheck: _Optional[_Union[Healthcheck, _Mapping]] = ..., health: _Optional[str] = ..., group: _Optional[str] = ..., hidden: _Optional[bool] = ..., open_in: _Optional[str] = ..., tooltip: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[AppStatus, _Mapping]]] = ...) -> None: ...

class Healthcheck(_message.Message):
    __slots__ = ("url", "interval", "threshold")
    URL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    url: str
    interval: int
    threshold: int
    def __init__(self, url: _Optional[str] = ..., interval: _Optional[int] = ..., threshold: _Optional[int] = ...) -> None: ...

class AppStatus(_message.Message):
    __slots__ = ("id", "created_at", "agent_id", "app_id", "workspace_id", "state", "message", "uri")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: _timestamp_pb2.Timestamp
    agent_id: str
    app_id: str
    workspace_id: str
    state: str
    message: str
    uri: str
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_id: _Optional[str] = ..., app_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class LogSource(_message.Message):
    __slots__ = ("id", "workspace_agent_id", "created_at", "display_name", "icon")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace_agent_id: str
    created_at: _timestamp_pb2.Timestamp
    display_name: str
    icon: str
    def __init__(self, id: _Optional[str] = ..., workspace_agent_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., display_name: _Optional[str] = ..., icon: _Optional[str] = ...) -> None: ...

class Script(_message.Message):
    __slots__ = ("id", "log_source_id", "log_path", "script", "cron", "run_on_start", "run_on_stop", "start_blocks_login", "timeout_seconds", "display_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOG_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_START_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_STOP_FIELD_NUMBER: _ClassVar[int]
    START_BLOCKS_LOGIN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    log_source_id: str
    log_path: str
    script: str
    cron: str
    run_on_start: bool
    run_on_stop: bool
    start_blocks_login: bool
    timeout_seconds: int
    display_name: str
    def __init__(self, id: _Optional[str] = ..., log_source_id: _Optional[str] = ..., log_path: _Optional[str] = ..., script: _Optional[str] = ..., cron: _Optional[str] = ..., run_on_start: _Optional[bool] = ..., run_on_stop: _Optional[bool] = ..., start_blocks_login: _Optional[bool] = ..., timeout_seconds: _Optional[int] = ..., display_name: _Optional[str] = ...) -> None: ...

class GetWorkspaceAgentDiagnosisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetWorkspaceAgentDiagnosisResponse(_message.Message):
    __slots__ = ("diagnosis",)
    DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    diagnosis: Diagnosis
    def __init__(self, diagnosis: _Optional[_Union[Diagnosis, _Mapping]] = ...) -> None: ...

class Diagnosis(_message.Message):
    __slots__ = ("agent_id", "status", "lifecycle_state", "waiting_on", "summary", "build_number", "created_at", "first_connected_at", "last_connected_at", "disconnected_at", "last_connected_replica_id", "token_rejection", "state_since", "state_seconds", "pending_scripts", "failed_scripts", "netcheck")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STATE_FIELD_NUMBER: _ClassVar[int]
    WAITING_ON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    BUILD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_CONNECTED_REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_REJECTION_FIELD_NUMBER: _ClassVar[int]
    STATE_SINCE_FIELD_NUMBER: _ClassVar[int]
    STATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_SCRIPTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_SCRIPTS_FIELD_NUMBER: _ClassVar[int]
    NETCHECK_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    status: str
    lifecycle_state: str
    waiting_on: str
    summary: str
    build_number: int
    created_at: _timestamp_pb2.Timestamp
    first_connected_at: _timestamp_pb2.Timestamp
    last_connected_at: _timestamp_pb2.Timestamp
    disconnected_at: _timestamp_pb2.Timestamp
    last_connected_replica_id: str
    token_rejection: TokenRejection
    state_since: _timestamp_pb2.Timestamp
    state_seconds: int
    pending_scripts: _containers.RepeatedScalarFieldContainer[str]
    failed_scripts: _containers.RepeatedCompositeFieldContainer[ScriptFailure]
    netcheck: NetcheckSummary
    def __init__(self, agent_id: _Optional[str] = ..., status: _Optional[str] = ..., lifecycle_state: _Optional[str] = ..., waiting_on: _Optional[str] = ..., summary: _Optional[str] = ..., build_number: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disconnected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_connected_replica_id: _Optional[str] = ..., token_rejection: _Optional[_Union[TokenRejection, _Mapping]] = ..., state_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_seconds: _Optional[int] = ..., pending_scripts: _Optional[_Iterable[str]] = ..., failed_scripts: _Optional[_Iterable[_Union[ScriptFailure, _Mapping]]] = ..., netcheck: _Optional[_Union[NetcheckSummary, _Mapping]] = ...) -> None: ...

class NetcheckSummary(_message.Message):
    __slots__ = ("reported_at", "preferred_derp", "preferred_derp_name", "udp", "ipv4", "ipv6")
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_DERP_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_DERP_NAME_FIELD_NUMBER: _ClassVar[int]
    UDP_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    reported_at: _timestamp_pb2.Timestamp
    preferred_derp: int
    preferred_derp_name: str
    udp: bool
    ipv4: bool
    ipv6: bool
    def __init__(self, reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., preferred_derp: _Optional[int] = ..., preferred_derp_name: _Optional[str] = ..., udp: _Optional[bool] = ..., ipv4: _Optional[bool] = ..., ipv6: _Optional[bool] = ...) -> None: ...

class TokenRejection(_message.Message):
    __slots__ = ("rejected_at", "reason", "build_number", "attempts")
    REJECTED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BUILD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    rejected_at: _timestamp_pb2.Timestamp
    reason: str
    build_number: int
    attempts: int
    def __init__(self, rejected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., build_number: _Optional[int] = ..., attempts: _Optional[int] = ...) -> None: ...

class ScriptFailure(_message.Message):
    __slots__ = ("display_name", "exit_code", "status")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    exit_code: int
    status: str
    def __init__(self, display_name: _Optional[str] = ..., exit_code: _Optional[int] = ..., status: _Optional[str] = ...) -> None: ...
