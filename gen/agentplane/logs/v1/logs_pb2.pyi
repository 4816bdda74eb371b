import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PostLogSourceRequest(_message.Message):
    __slots__ = ("id", "display_name", "icon")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    icon: str
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., icon: _Optional[str] = ...) -> None: ...

class PostLogSourceResponse(_message.Message):
    __slots__ = ("source", "created")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    source: LogSource
    created: bool
    def __init__(self, source: _Optional[_Union[LogSource, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

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

class Log(_message.Message):
    __slots__ = ("id", "created_at", "output", "level", "source_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    created_at: _timestamp_pb2.Timestamp
    output: str
    level: str
    source_id: str
    def __init__(self, id: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output: _Optional[str] = ..., level: _Optional[str] = ..., source_id: _Optional[str] = ...) -> None: ...

class ListWorkspaceAgentLogsRequest(_message.Message):
    __slots__ = ("agent_id", "after", "before", "limit")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    after: int
    before: int
    limit: int
    def __init__(self, agent_id: _Optional[str] = ..., after: _Optional[int] = ..., before: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListWorkspaceAgentLogsResponse(_message.Message):
    __slots__ = ("logs", "more", "logs_overflowed")
    LOGS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    LOGS_OVERFLOWED_FIELD_NUMBER: _ClassVar[int]
    logs: _containers.RepeatedCompositeFieldContainer[Log]
    more: bool
    logs_overflowed: bool
    def __init__(self, logs: _Optional[_Iterable[_Union[Log, _Mapping]]] = ..., more: _Optional[bool] = ..., logs_overflowed: _Optional[bool] = ...) -> None: ...

class WatchWorkspaceAgentLogsRequest(_message.Message):
    __slots__ = ("agent_id", "after")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    after: int
    def __init__(self, agent_id: _Optional[str] = ..., after: _Optional[int] = ...) -> None: ...

class WatchWorkspaceAgentLogsResponse(_message.Message):
    __slots__ = ("logs", "backlog", "backlog_complete", "event")
    class Event(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        EVENT_UNSPECIFIED: _ClassVar[WatchWorkspaceAgentLogsResponse.Event]
        EVENT_LOGS_OVERFLOWED: _ClassVar[WatchWorkspaceAgentLogsResponse.Event]
        EVENT_AGENT_REPLACED: _ClassVar[WatchWorkspaceAgentLogsResponse.Event]
    EVENT_UNSPECIFIED: WatchWorkspaceAgentLogsResponse.Event
    EVENT_LOGS_OVERFLOWED: WatchWorkspaceAgentLogsResponse.Event
    EVENT_AGENT_REPLACED: WatchWorkspaceAgentLogsResponse.Event
    LOGS_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    logs: _containers.RepeatedCompositeFieldContainer[Log]
    backlog: bool
    backlog_complete: bool
    event: WatchWorkspaceAgentLogsResponse.Event
    def __init__(self, logs: _Optional[_Iterable[_Union[Log, _Mapping]]] = ..., backlog: _Optional[bool] = ..., backlog_complete: _Optional[bool] = ..., event: _Optional[_Union[WatchWorkspaceAgentLogsResponse.Event, str]] = ...) -> None: ...
