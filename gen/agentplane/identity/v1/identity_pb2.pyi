from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateAWSRequest(_message.Message):
    __slots__ = ("signature", "document", "agent_name")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    signature: str
    document: str
    agent_name: str
    def __init__(self, signature: _Optional[str] = ..., document: _Optional[str] = ..., agent_name: _Optional[str] = ...) -> None: ...

class AuthenticateAWSResponse(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class AuthenticateAzureRequest(_message.Message):
    __slots__ = ("signature", "encoding", "agent_name")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    signature: str
    encoding: str
    agent_name: str
    def __init__(self, signature: _Optional[str] = ..., encoding: _Optional[str] = ..., agent_name: _Optional[str] = ...) -> None: ...

class AuthenticateAzureResponse(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class AuthenticateGoogleRequest(_message.Message):
    __slots__ = ("json_web_token", "agent_name")
    JSON_WEB_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    json_web_token: str
    agent_name: str
    def __init__(self, json_web_token: _Optional[str] = ..., agent_name: _Optional[str] = ...) -> None: ...

class AuthenticateGoogleResponse(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...
