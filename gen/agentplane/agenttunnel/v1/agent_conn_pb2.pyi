import datetime

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as _agent_tunnel_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListListeningPortsRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class ListListeningPortsResponse(_message.Message):
    __slots__ = ("ports",)
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedCompositeFieldContainer[_agent_tunnel_pb2.ListeningPort]
    def __init__(self, ports: _Optional[_Iterable[_Union[_agent_tunnel_pb2.ListeningPort, _Mapping]]] = ...) -> None: ...

class ListContainersRequest(_message.Message):
    __slots__ = ("agent_id", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListContainersResponse(_message.Message):
    __slots__ = ("list",)
    LIST_FIELD_NUMBER: _ClassVar[int]
    list: _agent_tunnel_pb2.ContainerList
    def __init__(self, list: _Optional[_Union[_agent_tunnel_pb2.ContainerList, _Mapping]] = ...) -> None: ...

class WatchContainersRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class WatchContainersResponse(_message.Message):
    __slots__ = ("list",)
    LIST_FIELD_NUMBER: _ClassVar[int]
    list: _agent_tunnel_pb2.ContainerList
    def __init__(self, list: _Optional[_Union[_agent_tunnel_pb2.ContainerList, _Mapping]] = ...) -> None: ...

class DeleteDevcontainerRequest(_message.Message):
    __slots__ = ("agent_id", "devcontainer_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVCONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    devcontainer_id: str
    def __init__(self, agent_id: _Optional[str] = ..., devcontainer_id: _Optional[str] = ...) -> None: ...

class DeleteDevcontainerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecreateDevcontainerRequest(_message.Message):
    __slots__ = ("agent_id", "devcontainer_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVCONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    devcontainer_id: str
    def __init__(self, agent_id: _Optional[str] = ..., devcontainer_id: _Optional[str] = ...) -> None: ...

class RecreateDevcontainerResponse(_message.Message):
    __slots__ = ("message", "detail")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    message: str
    detail: str
    def __init__(self, message: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class PtyRequest(_message.Message):
    __slots__ = ("open", "data", "height", "width")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    open: PtyOpen
    data: bytes
    height: int
    width: int
    def __init__(self, open: _Optional[_Union[PtyOpen, _Mapping]] = ..., data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class PtyOpen(_message.Message):
    __slots__ = ("agent_id", "reconnect", "height", "width", "command", "container", "container_user", "backend_type")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_USER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    reconnect: str
    height: int
    width: int
    command: str
    container: str
    container_user: str
    backend_type: str
    def __init__(self, agent_id: _Optional[str] = ..., reconnect: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., command: _Optional[str] = ..., container: _Optional[str] = ..., container_user: _Optional[str] = ..., backend_type: _Optional[str] = ...) -> None: ...

class PtyResponse(_message.Message):
    __slots__ = ("session", "output")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    session: _agent_tunnel_pb2.PtySession
    output: bytes
    def __init__(self, session: _Optional[_Union[_agent_tunnel_pb2.PtySession, _Mapping]] = ..., output: _Optional[bytes] = ...) -> None: ...

class ListPtySessionsRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class ListPtySessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_agent_tunnel_pb2.PtySession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[_agent_tunnel_pb2.PtySession, _Mapping]]] = ...) -> None: ...

class WatchWorkspaceAgentMetadataRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class WatchWorkspaceAgentMetadataResponse(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.RepeatedCompositeFieldContainer[WorkspaceAgentMetadata]
    def __init__(self, metadata: _Optional[_Iterable[_Union[WorkspaceAgentMetadata, _Mapping]]] = ...) -> None: ...

class WorkspaceAgentMetadata(_message.Message):
    __slots__ = ("result", "description")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    result: WorkspaceAgentMetadataResult
    description: WorkspaceAgentMetadataDescription
    def __init__(self, result: _Optional[_Union[WorkspaceAgentMetadataResult, _Mapping]] = ..., description: _Optional[_Union[WorkspaceAgentMetadataDescription, _Mapping]] = ...) -> None: ...

class WorkspaceAgentMetadataResult(_message.Message):
    __slots__ = ("collected_at", "age", "value", "error")
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    collected_at: _timestamp_pb2.Timestamp
    age: int
    value: str
    error: str
    def __init__(self, collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., age: _Optional[int] = ..., value: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class WorkspaceAgentMetadataDescription(_message.Message):
    __slots__ = ("display_name", "key", "script", "interval", "timeout")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    key: str
    script: str
    interval: int
    timeout: int
    def __init__(self, display_name: _Optional[str] = ..., key: _Optional[str] = ..., script: _Optional[str] = ..., interval: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
