from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetServerKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerKeyResponse(_message.Message):
    __slots__ = ("private_key", "public_key")
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    private_key: bytes
    public_key: bytes
    def __init__(self, private_key: _Optional[bytes] = ..., public_key: _Optional[bytes] = ...) -> None: ...
