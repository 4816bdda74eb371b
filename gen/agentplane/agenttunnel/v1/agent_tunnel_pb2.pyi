import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TunnelRequest(_message.Message):
    __slots__ = ("id", "hello", "listening_ports", "containers", "pty_sessions", "pty_attached", "pty_output", "pty_input_ack", "done", "failure")
    ID_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    LISTENING_PORTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    PTY_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PTY_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    PTY_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PTY_INPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    id: int
    hello: Hello
    listening_ports: ListeningPorts
    containers: ContainerList
    pty_sessions: PtySessionList
    pty_attached: PtyAttached
    pty_output: bytes
    pty_input_ack: int
    done: Done
    failure: Failure
    def __init__(self, id: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., listening_ports: _Optional[_Union[ListeningPorts, _Mapping]] = ..., containers: _Optional[_Union[ContainerList, _Mapping]] = ..., pty_sessions: _Optional[_Union[PtySessionList, _Mapping]] = ..., pty_attached: _Optional[_Union[PtyAttached, _Mapping]] = ..., pty_output: _Optional[bytes] = ..., pty_input_ack: _Optional[int] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class TunnelResponse(_message.Message):
    __slots__ = ("id", "list_listening_ports", "list_containers", "watch_containers", "delete_devcontainer", "recreate_devcontainer", "list_pty_sessions", "pty_attach", "pty_input", "pty_output_ack", "cancel")
    ID_FIELD_NUMBER: _ClassVar[int]
    LIST_LISTENING_PORTS_FIELD_NUMBER: _ClassVar[int]
    LIST_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    WATCH_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    DELETE_DEVCONTAINER_FIELD_NUMBER: _ClassVar[int]
    RECREATE_DEVCONTAINER_FIELD_NUMBER: _ClassVar[int]
    LIST_PTY_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PTY_ATTACH_FIELD_NUMBER: _ClassVar[int]
    PTY_INPUT_FIELD_NUMBER: _ClassVar[int]
    PTY_OUTPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    list_listening_ports: ListListeningPortsCall
    list_containers: ListContainersCall
    watch_containers: WatchContainersCall
    delete_devcontainer: DeleteDevcontainerCall
    recreate_devcontainer: RecreateDevcontainerCall
    list_pty_sessions: ListPtySessionsCall
    pty_attach: PtyAttach
    pty_input: PtyInput
    pty_output_ack: int
    cancel: Cancel
    def __init__(self, id: _Optional[int] = ..., list_listening_ports: _Optional[_Union[ListListeningPortsCall, _Mapping]] = ..., list_containers: _Optional[_Union[ListContainersCall, _Mapping]] = ..., watch_containers: _Optional[_Union[WatchContainersCall, _Mapping]] = ..., delete_devcontainer: _Optional[_Union[DeleteDevcontainerCall, _Mapping]] = ..., recreate_devcontainer: _Optional[_Union[RecreateDevcontainerCall, _Mapping]] = ..., list_pty_sessions: _Optional[_Union[ListPtySessionsCall, _Mapping]] = ..., pty_attach: _Optional[_Union[PtyAttach, _Mapping]] = ..., pty_input: _Optional[_Union[PtyInput, _Mapping]] = ..., pty_output_ack: _Optional[int] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("version", "pty_idle_timeout_seconds")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PTY_IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    pty_idle_timeout_seconds: int
    def __init__(self, version: _Optional[str] = ..., pty_idle_timeout_seconds: _Optional[int] = ...) -> None: ...

class ListListeningPortsCall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListContainersCall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchContainersCall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteDevcontainerCall(_message.Message):
    __slots__ = ("devcontainer_id",)
    DEVCONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    devcontainer_id: str
    def __init__(self, devcontainer_id: _Optional[str] = ...) -> None: ...

class RecreateDevcontainerCall(_message.Message):
    __slots__ = ("devcontainer_id",)
    DEVCONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    devcontainer_id: str
    def __init__(self, devcontainer_id: _Optional[str] = ...) -> None: ...

class ListPtySessionsCall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Done(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Failure(_message.Message):
    __slots__ = ("kind", "message", "detail")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Failure.Kind]
        KIND_NOT_FOUND: _ClassVar[Failure.Kind]
        KIND_CONFLICT: _ClassVar[Failure.Kind]
        KIND_INVALID: _ClassVar[Failure.Kind]
        KIND_INTERNAL: _ClassVar[Failure.Kind]
    KIND_UNSPECIFIED: Failure.Kind
    KIND_NOT_FOUND: Failure.Kind
    KIND_CONFLICT: Failure.Kind
    KIND_INVALID: Failure.Kind
    KIND_INTERNAL: Failure.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: Failure.Kind
    message: str
    detail: str
    def __init__(self, kind: _Optional[_Union[Failure.Kind, str]] = ..., message: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListeningPort(_message.Message):
    __slots__ = ("process_name", "network", "port")
    PROCESS_NAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    process_name: str
    network: str
    port: int
    def __init__(self, process_name: _Optional[str] = ..., network: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class ListeningPorts(_message.Message):
    __slots__ = ("ports",)
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedCompositeFieldContainer[ListeningPort]
    def __init__(self, ports: _Optional[_Iterable[_Union[ListeningPort, _Mapping]]] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("created_at", "id", "name", "image", "labels", "running", "ports", "status", "volumes")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class VolumesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    id: str
    name: str
    image: str
    labels: _containers.ScalarMap[str, str]
    running: bool
    ports: _containers.RepeatedCompositeFieldContainer[ContainerPort]
    status: str
    volumes: _containers.ScalarMap[str, str]
    def __init__(self, created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., image: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., running: _Optional[bool] = ..., ports: _Optional[_Iterable[_Union[ContainerPort, _Mapping]]] = ..., status: _Optional[str] = ..., volumes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ContainerPort(_message.Message):
    __slots__ = ("port", "network", "host_ip", "host_port")
    PORT_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    port: int
    network: str
    host_ip: str
    host_port: int
    def __init__(self, port: _Optional[int] = ..., network: _Optional[str] = ..., host_ip: _Optional[str] = ..., host_port: _Optional[int] = ...) -> None: ...

class Devcontainer(_message.Message):
    __slots__ = ("id", "name", "workspace_folder", "config_path", "status", "dirty", "container", "agent", "error", "subagent_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FOLDER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DIRTY_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUBAGENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    workspace_folder: str
    config_path: str
    status: str
    dirty: bool
    container: Container
    agent: DevcontainerAgent
    error: str
    subagent_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., workspace_folder: _Optional[str] = ..., config_path: _Optional[str] = ..., status: _Optional[str] = ..., dirty: _Optional[bool] = ..., container: _Optional[_Union[Container, _Mapping]] = ..., agent: _Optional[_Union[DevcontainerAgent, _Mapping]] = ..., error: _Optional[str] = ..., subagent_id: _Optional[str] = ...) -> None: ...

class DevcontainerAgent(_message.Message):
    __slots__ = ("id", "name", "directory")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    directory: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., directory: _Optional[str] = ...) -> None: ...

class ContainerList(_message.Message):
    __slots__ = ("containers", "devcontainers", "warnings")
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    DEVCONTAINERS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[Container]
    devcontainers: _containers.RepeatedCompositeFieldContainer[Devcontainer]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, containers: _Optional[_Iterable[_Union[Container, _Mapping]]] = ..., devcontainers: _Optional[_Iterable[_Union[Devcontainer, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class PtyAttach(_message.Message):
    __slots__ = ("reconnect_id", "height", "width", "command", "container", "container_user", "backend_type", "client_ip")
    RECONNECT_ID_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_USER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    reconnect_id: str
    height: int
    width: int
    command: str
    container: str
    container_user: str
    backend_type: str
    client_ip: str
    def __init__(self, reconnect_id: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., command: _Optional[str] = ..., container: _Optional[str] = ..., container_user: _Optional[str] = ..., backend_type: _Optional[str] = ..., client_ip: _Optional[str] = ...) -> None: ...

class PtyInput(_message.Message):
    __slots__ = ("data", "height", "width")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    height: int
    width: int
    def __init__(self, data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class PtyAttached(_message.Message):
    __slots__ = ("session", "replayed_bytes")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_BYTES_FIELD_NUMBER: _ClassVar[int]
    session: PtySession
    replayed_bytes: int
    def __init__(self, session: _Optional[_Union[PtySession, _Mapping]] = ..., replayed_bytes: _Optional[int] = ...) -> None: ...

class PtySession(_message.Message):
    __slots__ = ("id", "command", "height", "width", "created_at", "last_attached_at", "attached_clients", "container")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTACHED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    id: str
    command: str
    height: int
    width: int
    created_at: _timestamp_pb2.Timestamp
    last_attached_at: _timestamp_pb2.Timestamp
    attached_clients: int
    container: str
    def __init__(self, id: _Optional[str] = ..., command: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_attached_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attached_clients: _Optional[int] = ..., container: _Optional[str] = ...) -> None: ...

class PtySessionList(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[PtySession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[PtySession, _Mapping]]] = ...) -> None: ...
