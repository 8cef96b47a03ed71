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
    __slots__ = ("version", "uptime", "default_provider", "providers", "store", "channels", "spend_today_usd", "usage_today")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SPEND_TODAY_USD_FIELD_NUMBER: _ClassVar[int]
    USAGE_TODAY_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime: _duration_pb2.Duration
    default_provider: str
    providers: _containers.RepeatedCompositeFieldContainer[ProviderStatus]
    store: StoreStatus
    channels: _containers.RepeatedCompositeFieldContainer[ChannelStatus]
    spend_today_usd: float
    usage_today: _containers.RepeatedCompositeFieldContainer[ModelUsage]
    def __init__(self, version: _Optional[str] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_provider: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[ProviderStatus, _Mapping]]] = ..., store: _Optional[_Union[StoreStatus, _Mapping]] = ..., channels: _Optional[_Iterable[_Union[ChannelStatus, _Mapping]]] = ..., spend_today_usd: _Optional[float] = ..., usage_today: _Optional[_Iterable[_Union[ModelUsage, _Mapping]]] = ...) -> None: ...

class ModelUsage(_message.Message):
    __slots__ = ("provider", "model", "turns", "input_tokens", "output_tokens", "cost_usd")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    turns: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., turns: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("backend", "healthy", "session_count", "message_count", "error", "writable", "write_error")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    SESSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    WRITE_ERROR_FIELD_NUMBER: _ClassVar[int]
    backend: str
    healthy: bool
    session_count: int
    message_count: int
    error: str
    writable: bool
    write_error: str
    def __init__(self, backend: _Optional[str] = ..., healthy: _Optional[bool] = ..., session_count: _Optional[int] = ..., message_count: _Optional[int] = ..., error: _Optional[str] = ..., writable: _Optional[bool] = ..., write_error: _Optional[str] = ...) -> None: ...

class ChannelStatus(_message.Message):
    __slots__ = ("name", "enabled", "connected", "bot_name", "last_error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    connected: bool
    bot_name: str
    last_error: str
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., connected: _Optional[bool] = ..., bot_name: _Optional[str] = ..., last_error: _Optional[str] = ...) -> None: ...
