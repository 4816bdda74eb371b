import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateUserRequest(_message.Message):
    __slots__ = ("username", "email", "role")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    username: str
    email: str
    role: str
    def __init__(self, username: _Optional[str] = ..., email: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("id", "username", "email", "api_key", "role")
    ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    username: str
    email: str
    api_key: str
    role: str
    def __init__(self, id: _Optional[str] = ..., username: _Optional[str] = ..., email: _Optional[str] = ..., api_key: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class CreateWorkspaceRequest(_message.Message):
    __slots__ = ("owner", "name", "spec_json")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    owner: str
    name: str
    spec_json: str
    def __init__(self, owner: _Optional[str] = ..., name: _Optional[str] = ..., spec_json: _Optional[str] = ...) -> None: ...

class CreateWorkspaceResponse(_message.Message):
    __slots__ = ("build",)
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: Build
    def __init__(self, build: _Optional[_Union[Build, _Mapping]] = ...) -> None: ...

class BuildWorkspaceRequest(_message.Message):
    __slots__ = ("owner", "name", "spec_json", "transition")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    owner: str
    name: str
    spec_json: str
    transition: str
    def __init__(self, owner: _Optional[str] = ..., name: _Optional[str] = ..., spec_json: _Optional[str] = ..., transition: _Optional[str] = ...) -> None: ...

class BuildWorkspaceResponse(_message.Message):
    __slots__ = ("build",)
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: Build
    def __init__(self, build: _Optional[_Union[Build, _Mapping]] = ...) -> None: ...

class Build(_message.Message):
    __slots__ = ("workspace_id", "build_id", "build_number", "transition", "agents")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    BUILD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    build_id: str
    build_number: int
    transition: str
    agents: _containers.RepeatedCompositeFieldContainer[ProvisionedAgent]
    def __init__(self, workspace_id: _Optional[str] = ..., build_id: _Optional[str] = ..., build_number: _Optional[int] = ..., transition: _Optional[str] = ..., agents: _Optional[_Iterable[_Union[ProvisionedAgent, _Mapping]]] = ...) -> None: ...

class ProvisionedAgent(_message.Message):
    __slots__ = ("id", "name", "resource_id", "parent_id", "auth_token", "auth_instance_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AUTH_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    resource_id: str
    parent_id: str
    auth_token: str
    auth_instance_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., resource_id: _Optional[str] = ..., parent_id: _Optional[str] = ..., auth_token: _Optional[str] = ..., auth_instance_id: _Optional[str] = ...) -> None: ...

class LinkExternalAuthRequest(_message.Message):
    __slots__ = ("user", "provider_id", "access_token", "refresh_token", "expires_at", "token_extra_json")
    USER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    user: str
    provider_id: str
    access_token: str
    refresh_token: str
    expires_at: _timestamp_pb2.Timestamp
    token_extra_json: str
    def __init__(self, user: _Optional[str] = ..., provider_id: _Optional[str] = ..., access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., token_extra_json: _Optional[str] = ...) -> None: ...

class LinkExternalAuthResponse(_message.Message):
    __slots__ = ("user_id", "provider_id", "updated_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    provider_id: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReinitWorkspaceRequest(_message.Message):
    __slots__ = ("owner", "name")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    owner: str
    name: str
    def __init__(self, owner: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ReinitWorkspaceResponse(_message.Message):
    __slots__ = ("workspace_id", "owner_id", "reason", "build_number")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BUILD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    owner_id: str
    reason: str
    build_number: int
    def __init__(self, workspace_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., reason: _Optional[str] = ..., build_number: _Optional[int] = ...) -> None: ...

class SetDERPMapRequest(_message.Message):
    __slots__ = ("derp_map_json",)
    DERP_MAP_JSON_FIELD_NUMBER: _ClassVar[int]
    derp_map_json: str
    def __init__(self, derp_map_json: _Optional[str] = ...) -> None: ...

class SetDERPMapResponse(_message.Message):
    __slots__ = ("region_ids",)
    REGION_IDS_FIELD_NUMBER: _ClassVar[int]
    region_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, region_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RotateResumeTokenKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateResumeTokenKeyResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class CreatePrebuildRequest(_message.Message):
    __slots__ = ("name", "spec_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec_json: str
    def __init__(self, name: _Optional[str] = ..., spec_json: _Optional[str] = ...) -> None: ...

class CreatePrebuildResponse(_message.Message):
    __slots__ = ("build",)
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: Build
    def __init__(self, build: _Optional[_Union[Build, _Mapping]] = ...) -> None: ...

class ClaimPrebuildRequest(_message.Message):
    __slots__ = ("name", "owner", "new_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner: str
    new_name: str
    def __init__(self, name: _Optional[str] = ..., owner: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class ClaimPrebuildResponse(_message.Message):
    __slots__ = ("build", "owner_id")
    BUILD_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    build: Build
    owner_id: str
    def __init__(self, build: _Optional[_Union[Build, _Mapping]] = ..., owner_id: _Optional[str] = ...) -> None: ...
