from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetGitSSHKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGitSSHKeyResponse(_message.Message):
    __slots__ = ("public_key", "private_key")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    private_key: str
    def __init__(self, public_key: _Optional[str] = ..., private_key: _Optional[str] = ...) -> None: ...

class GetExternalAuthRequest(_message.Message):
    __slots__ = ("match", "id", "listen")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    match: str
    id: str
    listen: bool
    def __init__(self, match: _Optional[str] = ..., id: _Optional[str] = ..., listen: _Optional[bool] = ...) -> None: ...

class GetExternalAuthResponse(_message.Message):
    __slots__ = ("access_token", "token_extra_json", "url", "type", "username", "password")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_extra_json: str
    url: str
    type: str
    username: str
    password: str
    def __init__(self, access_token: _Optional[str] = ..., token_extra_json: _Optional[str] = ..., url: _Optional[str] = ..., type: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class WatchReinitRequest(_message.Message):
    __slots__ = ("wait",)
    WAIT_FIELD_NUMBER: _ClassVar[int]
    wait: bool
    def __init__(self, wait: _Optional[bool] = ...) -> None: ...

class WatchReinitResponse(_message.Message):
    __slots__ = ("ping", "reinit")
    PING_FIELD_NUMBER: _ClassVar[int]
    REINIT_FIELD_NUMBER: _ClassVar[int]
    ping: Ping
    reinit: ReinitializationEvent
    def __init__(self, ping: _Optional[_Union[Ping, _Mapping]] = ..., reinit: _Optional[_Union[ReinitializationEvent, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReinitializationEvent(_message.Message):
    __slots__ = ("workspace_id", "owner_id", "reason")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    owner_id: str
    reason: str
    def __init__(self, workspace_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("agent_id", "workspace_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    workspace_id: str
    def __init__(self, agent_id: _Optional[str] = ..., workspace_id: _Optional[str] = ...) -> None: ...

class HoldConnectionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HoldConnectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
