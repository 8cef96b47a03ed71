import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "uptime", "default_provider", "providers", "store")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime: _duration_pb2.Duration
    default_provider: str
    providers: _containers.RepeatedCompositeFieldContainer[ProviderStatus]
    store: StoreStatus
    def __init__(self, version: _Optional[str] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_provider: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[ProviderStatus, _Mapping]]] = ..., store: _Optional[_Union[StoreStatus, _Mapping]] = ...) -> None: ...

class ProviderStatus(_message.Message):
    __slots__ = ("name", "configured", "base_url", "default_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    configured: bool
    base_url: str
    default_model: str
    def __init__(self, name: _Optional[str] = ..., configured: _Optional[bool] = ..., base_url: _Optional[str] = ..., default_model: _Optional[str] = ...) -> None: ...

class StoreStatus(_message.Message):
    __slots__ = ("backend", "healthy", "session_count", "message_count", "error")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    SESSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    backend: str
    healthy: bool
    session_count: int
    message_count: int
    error: str
    def __init__(self, backend: _Optional[str] = ..., healthy: _Optional[bool] = ..., session_count: _Optional[int] = ..., message_count: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
