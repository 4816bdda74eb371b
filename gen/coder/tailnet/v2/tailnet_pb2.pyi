import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DERPMap(_message.Message):
    __slots__ = ("home_params", "regions")
    class HomeParams(_message.Message):
        __slots__ = ("region_score",)
        class RegionScoreEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: int
            value: float
            def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
        REGION_SCORE_FIELD_NUMBER: _ClassVar[int]
        region_score: _containers.ScalarMap[int, float]
        def __init__(self, region_score: _Optional[_Mapping[int, float]] = ...) -> None: ...
    class Region(_message.Message):
        __slots__ = ("region_id", "embedded_relay", "region_code", "region_name", "avoid", "nodes")
        class Node(_message.Message):
            __slots__ = ("name", "region_id", "host_name", "cert_name", "ipv4", "ipv6", "stun_port", "stun_only", "derp_port", "insecure_for_tests", "force_http", "stun_test_ip", "can_port_80")
            NAME_FIELD_NUMBER: _ClassVar[int]
            REGION_ID_FIELD_NUMBER: _ClassVar[int]
            HOST_NAME_FIELD_NUMBER: _ClassVar[int]
            CERT_NAME_FIELD_NUMBER: _ClassVar[int]
            IPV4_FIELD_NUMBER: _ClassVar[int]
            IPV6_FIELD_NUMBER: _ClassVar[int]
            STUN_PORT_FIELD_NUMBER: _ClassVar[int]
            STUN_ONLY_FIELD_NUMBER: _ClassVar[int]
            DERP_PORT_FIELD_NUMBER: _ClassVar[int]
            INSECURE_FOR_TESTS_FIELD_NUMBER: _ClassVar[int]
            FORCE_HTTP_FIELD_NUMBER: _ClassVar[int]
            STUN_TEST_IP_FIELD_NUMBER: _ClassVar[int]
            CAN_PORT_80_FIELD_NUMBER: _ClassVar[int]
            name: str
            region_id: int
            host_name: str
            cert_name: str
            ipv4: str
            ipv6: str
            stun_port: int
            stun_only: bool
            derp_port: int
            insecure_for_tests: bool
            force_http: bool
            stun_test_ip: str
            can_port_80: bool
            def __init__(self, name: _Optional[str] = ..., region_id: _Optional[int] = ..., host_name: _Optional[str] = ..., cert_name: _Optional[str] = ..., ipv4: _Optional[str] = ..., ipv6: _Optional[str] = ..., stun_port: _Optional[int] = ..., stun_only: _Optional[bool] = ..., derp_port: _Optional[int] = ..., insecure_for_tests: _Optional[bool] = ..., force_http: _Optional[bool] = ..., stun_test_ip: _Optional[str] = ..., can_port_80: _Optional[bool] = ...) -> None: ...
        REGION_ID_FIELD_NUMBER: _ClassVar[int]
        EMBEDDED_RELAY_FIELD_NUMBER: _ClassVar[int]
        REGION_CODE_FIELD_NUMBER: _ClassVar[int]
        REGION_NAME_FIELD_NUMBER: _ClassVar[int]
        AVOID_FIELD_NUMBER: _ClassVar[int]
        NODES_FIELD_NUMBER: _ClassVar[int]
        region_id: int
        embedded_relay: bool
        region_code: str
        region_name: str
        avoid: bool
        nodes: _containers.RepeatedCompositeFieldContainer[DERPMap.Region.Node]
        def __init__(self, region_id: _Optional[int] = ..., embedded_relay: _Optional[bool] = ..., region_code: _Optional[str] = ..., region_name: _Optional[str] = ..., avoid: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[DERPMap.Region.Node, _Mapping]]] = ...) -> None: ...
    class RegionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: DERPMap.Region
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[DERPMap.Region, _Mapping]] = ...) -> None: ...
    HOME_PARAMS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    home_params: DERPMap.HomeParams
    regions: _containers.MessageMap[int, DERPMap.Region]
    def __init__(self, home_params: _Optional[_Union[DERPMap.HomeParams, _Mapping]] = ..., regions: _Optional[_Mapping[int, DERPMap.Region]] = ...) -> None: ...

class StreamDERPMapsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "as_of", "key", "disco", "preferred_derp", "derp_latency", "derp_forced_websocket", "addresses", "allowed_ips", "endpoints")
    class DerpLatencyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class DerpForcedWebsocketEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISCO_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_DERP_FIELD_NUMBER: _ClassVar[int]
    DERP_LATENCY_FIELD_NUMBER: _ClassVar[int]
    DERP_FORCED_WEBSOCKET_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IPS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    as_of: _timestamp_pb2.Timestamp
    key: bytes
    disco: str
    preferred_derp: int
    derp_latency: _containers.ScalarMap[str, float]
    derp_forced_websocket: _containers.ScalarMap[int, str]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    allowed_ips: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[bytes] = ..., disco: _Optional[str] = ..., preferred_derp: _Optional[int] = ..., derp_latency: _Optional[_Mapping[str, float]] = ..., derp_forced_websocket: _Optional[_Mapping[int, str]] = ..., addresses: _Optional[_Iterable[str]] = ..., allowed_ips: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class RefreshResumeTokenRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RefreshResumeTokenResponse(_message.Message):
    __slots__ = ("token", "refresh_in", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_IN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    refresh_in: _duration_pb2.Duration
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., refresh_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CoordinateRequest(_message.Message):
    __slots__ = ("update_self", "disconnect", "add_tunnel", "remove_tunnel", "ready_for_handshake")
    class UpdateSelf(_message.Message):
        __slots__ = ("node",)
        NODE_FIELD_NUMBER: _ClassVar[int]
        node: Node
        def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...
    class Disconnect(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Tunnel(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: bytes
        def __init__(self, id: _Optional[bytes] = ...) -> None: ...
    class ReadyForHandshake(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: bytes
        def __init__(self, id: _Optional[bytes] = ...) -> None: ...
    UPDATE_SELF_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    ADD_TUNNEL_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TUNNEL_FIELD_NUMBER: _ClassVar[int]
    READY_FOR_HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    update_self: CoordinateRequest.UpdateSelf
    disconnect: CoordinateRequest.Disconnect
    add_tunnel: CoordinateRequest.Tunnel
    remove_tunnel: CoordinateRequest.Tunnel
    ready_for_handshake: _containers.RepeatedCompositeFieldContainer[CoordinateRequest.ReadyForHandshake]
    def __init__(self, update_self: _Optional[_Union[CoordinateRequest.UpdateSelf, _Mapping]] = ..., disconnect: _Optional[_Union[CoordinateRequest.Disconnect, _Mapping]] = ..., add_tunnel: _Optional[_Union[CoordinateRequest.Tunnel, _Mapping]] = ..., remove_tunnel: _Optional[_Union[CoordinateRequest.Tunnel, _Mapping]] = ..., ready_for_handshake: _Optional[_Iterable[_Union[CoordinateRequest.ReadyForHandshake, _Mapping]]] = ...) -> None: ...

class CoordinateResponse(_message.Message):
    __slots__ = ("peer_updates", "error")
    class PeerUpdate(_message.Message):
        __slots__ = ("id", "node", "kind", "reason")
        class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            KIND_UNSPECIFIED: _ClassVar[CoordinateResponse.PeerUpdate.Kind]
            NODE: _ClassVar[CoordinateResponse.PeerUpdate.Kind]
            DISCONNECTED: _ClassVar[CoordinateResponse.PeerUpdate.Kind]
            LOST: _ClassVar[CoordinateResponse.PeerUpdate.Kind]
            READY_FOR_HANDSHAKE: _ClassVar[CoordinateResponse.PeerUpdate.Kind]
        KIND_UNSPECIFIED: CoordinateResponse.PeerUpdate.Kind
        NODE: CoordinateResponse.PeerUpdate.Kind
        DISCONNECTED: CoordinateResponse.PeerUpdate.Kind
        LOST: CoordinateResponse.PeerUpdate.Kind
        READY_FOR_HANDSHAKE: CoordinateResponse.PeerUpdate.Kind
        ID_FIELD_NUMBER: _ClassVar[int]
        NODE_FIELD_NUMBER: _ClassVar[int]
        KIND_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        id: bytes
        node: Node
        kind: CoordinateResponse.PeerUpdate.Kind
        reason: str
        def __init__(self, id: _Optional[bytes] = ..., node: _Optional[_Union[Node, _Mapping]] = ..., kind: _Optional[_Union[CoordinateResponse.PeerUpdate.Kind, str]] = ..., reason: _Optional[str] = ...) -> None: ...
    PEER_UPDATES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    peer_updates: _containers.RepeatedCompositeFieldContainer[CoordinateResponse.PeerUpdate]
    error: str
    def __init__(self, peer_updates: _Optional[_Iterable[_Union[CoordinateResponse.PeerUpdate, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class IPFields(_message.Message):
    __slots__ = ("version",)
    class IPClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUBLIC: _ClassVar[IPFields.IPClass]
        PRIVATE: _ClassVar[IPFields.IPClass]
        LINK_LOCAL: _ClassVar[IPFields.IPClass]
        LOOPBACK: _ClassVar[IPFields.IPClass]
    PUBLIC: IPFields.IPClass
    PRIVATE: IPFields.IPClass
    LINK_LOCAL: IPFields.IPClass
    LOOPBACK: IPFields.IPClass
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASS_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ..., **kwargs) -> None: ...

class Netcheck(_message.Message):
    __slots__ = ("UDP", "IPv6", "IPv4", "IPv6CanSend", "IPv4CanSend", "ICMPv4", "OSHasIPv6", "MappingVariesByDestIP", "HairPinning", "UPnP", "PMP", "PCP", "PreferredDERP", "RegionV4Latency", "RegionV6Latency", "GlobalV4", "GlobalV6")
    class RegionV4LatencyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: _duration_pb2.Duration
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
    class RegionV6LatencyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: _duration_pb2.Duration
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
    class NetcheckIP(_message.Message):
        __slots__ = ("hash", "fields")
        HASH_FIELD_NUMBER: _ClassVar[int]
        FIELDS_FIELD_NUMBER: _ClassVar[int]
        hash: str
        fields: IPFields
        def __init__(self, hash: _Optional[str] = ..., fields: _Optional[_Union[IPFields, _Mapping]] = ...) -> None: ...
    UDP_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6CANSEND_FIELD_NUMBER: _ClassVar[int]
    IPV4CANSEND_FIELD_NUMBER: _ClassVar[int]
    ICMPV4_FIELD_NUMBER: _ClassVar[int]
    OSHASIPV6_FIELD_NUMBER: _ClassVar[int]
    MAPPINGVARIESBYDESTIP_FIELD_NUMBER: _ClassVar[int]
    HAIRPINNING_FIELD_NUMBER: _ClassVar[int]
    UPNP_FIELD_NUMBER: _ClassVar[int]
    PMP_FIELD_NUMBER: _ClassVar[int]
    PCP_FIELD_NUMBER: _ClassVar[int]
    PREFERREDDERP_FIELD_NUMBER: _ClassVar[int]
    REGIONV4LATENCY_FIELD_NUMBER: _ClassVar[int]
    REGIONV6LATENCY_FIELD_NUMBER: _ClassVar[int]
    GLOBALV4_FIELD_NUMBER: _ClassVar[int]
    GLOBALV6_FIELD_NUMBER: _ClassVar[int]
    UDP: bool
    IPv6: bool
    IPv4: bool
    IPv6CanSend: bool
    IPv4CanSend: bool
    ICMPv4: bool
    OSHasIPv6: _wrappers_pb2.BoolValue
    MappingVariesByDestIP: _wrappers_pb2.BoolValue
    HairPinning: _wrappers_pb2.BoolValue
    UPnP: _wrappers_pb2.BoolValue
    PMP: _wrappers_pb2.BoolValue
    PCP: _wrappers_pb2.BoolValue
    PreferredDERP: int
    RegionV4Latency: _containers.MessageMap[int, _duration_pb2.Duration]
    RegionV6Latency: _containers.MessageMap[int, _duration_pb2.Duration]
    GlobalV4: Netcheck.NetcheckIP
    GlobalV6: Netcheck.NetcheckIP
    def __init__(self, UDP: _Optional[bool] = ..., IPv6: _Optional[bool] = ..., IPv4: _Optional[bool] = ..., IPv6CanSend: _Optional[bool] = ..., IPv4CanSend: _Optional[bool] = ..., ICMPv4: _Optional[bool] = ..., OSHasIPv6: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., MappingVariesByDestIP: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., HairPinning: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., UPnP: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., PMP: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., PCP: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., PreferredDERP: _Optional[int] = ..., RegionV4Latency: _Optional[_Mapping[int, _duration_pb2.Duration]] = ..., RegionV6Latency: _Optional[_Mapping[int, _duration_pb2.Duration]] = ..., GlobalV4: _Optional[_Union[Netcheck.NetcheckIP, _Mapping]] = ..., GlobalV6: _Optional[_Union[Netcheck.NetcheckIP, _Mapping]] = ...) -> None: ...

class TelemetryEvent(_message.Message):
    __slots__ = ("id", "time", "application", "status", "client_type", "client_version", "node_id_self", "node_id_remote", "p2p_endpoint", "home_derp", "derp_map", "latest_netcheck", "connection_age", "connection_setup", "p2p_setup", "derp_latency", "p2p_latency", "throughput_mbits", "client_session_id")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONNECTED: _ClassVar[TelemetryEvent.Status]
        DISCONNECTED: _ClassVar[TelemetryEvent.Status]
    CONNECTED: TelemetryEvent.Status
    DISCONNECTED: TelemetryEvent.Status
    class ClientType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CLI: _ClassVar[TelemetryEvent.ClientType]
        AGENT: _ClassVar[TelemetryEvent.ClientType]
        CODERD: _ClassVar[TelemetryEvent.ClientType]
        WSPROXY: _ClassVar[TelemetryEvent.ClientType]
    CLI: TelemetryEvent.ClientType
    AGENT: TelemetryEvent.ClientType
    CODERD: TelemetryEvent.ClientType
    WSPROXY: TelemetryEvent.ClientType
    class P2PEndpoint(_message.Message):
        __slots__ = ("hash", "port", "fields")
        HASH_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        FIELDS_FIELD_NUMBER: _ClassVar[int]
        hash: str
        port: int
        fields: IPFields
        def __init__(self, hash: _Optional[str] = ..., port: _Optional[int] = ..., fields: _Optional[_Union[IPFields, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_SELF_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_REMOTE_FIELD_NUMBER: _ClassVar[int]
    P2P_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HOME_DERP_FIELD_NUMBER: _ClassVar[int]
    DERP_MAP_FIELD_NUMBER: _ClassVar[int]
    LATEST_NETCHECK_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_AGE_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_SETUP_FIELD_NUMBER: _ClassVar[int]
    P2P_SETUP_FIELD_NUMBER: _ClassVar[int]
    DERP_LATENCY_FIELD_NUMBER: _ClassVar[int]
    P2P_LATENCY_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_MBITS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    time: _timestamp_pb2.Timestamp
    application: str
    status: TelemetryEvent.Status
    client_type: TelemetryEvent.ClientType
    client_version: str
    node_id_self: int
    node_id_remote: int
    p2p_endpoint: TelemetryEvent.P2PEndpoint
    home_derp: int
    derp_map: DERPMap
    latest_netcheck: Netcheck
    connection_age: _duration_pb2.Duration
    connection_setup: _duration_pb2.Duration
    p2p_setup: _duration_pb2.Duration
    derp_latency: _duration_pb2.Duration
    p2p_latency: _duration_pb2.Duration
    throughput_mbits: _wrappers_pb2.FloatValue
    client_session_id: str
    def __init__(self, id: _Optional[bytes] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., application: _Optional[str] = ..., status: _Optional[_Union[TelemetryEvent.Status, str]] = ..., client_type: _Optional[_Union[TelemetryEvent.ClientType, str]] = ..., client_version: _Optional[str] = ..., node_id_self: _Optional[int] = ..., node_id_remote: _Optional[int] = ..., p2p_endpoint: _Optional[_Union[TelemetryEvent.P2PEndpoint, _Mapping]] = ..., home_derp: _Optional[int] = ..., derp_map: _Optional[_Union[DERPMap, _Mapping]] = ..., latest_netcheck: _Optional[_Union[Netcheck, _Mapping]] = ..., connection_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., connection_setup: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p2p_setup: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., derp_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p2p_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., throughput_mbits: _Optional[_Union[_wrappers_pb2.FloatValue, _Mapping]] = ..., client_session_id: _Optional[str] = ...) -> None: ...

class TelemetryRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TelemetryEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TelemetryEvent, _Mapping]]] = ...) -> None: ...

class TelemetryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkspaceUpdatesRequest(_message.Message):
    __slots__ = ("workspace_owner_id",)
    WORKSPACE_OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_owner_id: bytes
    def __init__(self, workspace_owner_id: _Optional[bytes] = ...) -> None: ...

class WorkspaceUpdate(_message.Message):
    __slots__ = ("upserted_workspaces", "upserted_agents", "deleted_workspaces", "deleted_agents")
    UPSERTED_WORKSPACES_FIELD_NUMBER: _ClassVar[int]
    UPSERTED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    DELETED_WORKSPACES_FIELD_NUMBER: _ClassVar[int]
    DELETED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    upserted_workspaces: _containers.RepeatedCompositeFieldContainer[Workspace]
    upserted_agents: _containers.RepeatedCompositeFieldContainer[Agent]
    deleted_workspaces: _containers.RepeatedCompositeFieldContainer[Workspace]
    deleted_agents: _containers.RepeatedCompositeFieldContainer[Agent]
    def __init__(self, upserted_workspaces: _Optional[_Iterable[_Union[Workspace, _Mapping]]] = ..., upserted_agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., deleted_workspaces: _Optional[_Iterable[_Union[Workspace, _Mapping]]] = ..., deleted_agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ...) -> None: ...

class Workspace(_message.Message):
    __slots__ = ("id", "name", "status")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[Workspace.Status]
        PENDING: _ClassVar[Workspace.Status]
        STARTING: _ClassVar[Workspace.Status]
        RUNNING: _ClassVar[Workspace.Status]
        STOPPING: _ClassVar[Workspace.Status]
        STOPPED: _ClassVar[Workspace.Status]
        FAILED: _ClassVar[Workspace.Status]
        CANCELING: _ClassVar[Workspace.Status]
        CANCELED: _ClassVar[Workspace.Status]
        DELETING: _ClassVar[Workspace.Status]
        DELETED: _ClassVar[Workspace.Status]
    UNKNOWN: Workspace.Status
    PENDING: Workspace.Status
    STARTING: Workspace.Status
    RUNNING: Workspace.Status
    STOPPING: Workspace.Status
    STOPPED: Workspace.Status
    FAILED: Workspace.Status
    CANCELING: Workspace.Status
    CANCELED: Workspace.Status
    DELETING: Workspace.Status
    DELETED: Workspace.Status
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    name: str
    status: Workspace.Status
    def __init__(self, id: _Optional[bytes] = ..., name: _Optional[str] = ..., status: _Optional[_Union[Workspace.Status, str]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("id", "name", "workspace_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    name: str
    workspace_id: bytes
    def __init__(self, id: _Optional[bytes] = ..., name: _Optional[str] = ..., workspace_id: _Optional[bytes] = ...) -> None: ...
