from openclanker.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatRequest(_message.Message):
    __slots__ = ("session_id", "session_key", "text", "provider", "model")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    session_key: str
    text: str
    provider: str
    model: str
    def __init__(self, session_id: _Optional[str] = ..., session_key: _Optional[str] = ..., text: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("started", "delta", "usage", "completed", "error")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    started: TurnStarted
    delta: TextDelta
    usage: _types_pb2.Usage
    completed: TurnCompleted
    error: TurnError
    def __init__(self, started: _Optional[_Union[TurnStarted, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., usage: _Optional[_Union[_types_pb2.Usage, _Mapping]] = ..., completed: _Optional[_Union[TurnCompleted, _Mapping]] = ..., error: _Optional[_Union[TurnError, _Mapping]] = ...) -> None: ...

class TurnStarted(_message.Message):
    __slots__ = ("session_id", "session_created", "user_message_id", "provider", "model")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_CREATED_FIELD_NUMBER: _ClassVar[int]
    USER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    session_created: bool
    user_message_id: int
    provider: str
    model: str
    def __init__(self, session_id: _Optional[str] = ..., session_created: _Optional[bool] = ..., user_message_id: _Optional[int] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class TurnCompleted(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ...) -> None: ...

class TurnError(_message.Message):
    __slots__ = ("code", "message", "partial")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    partial: _types_pb2.Message
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., partial: _Optional[_Union[_types_pb2.Message, _Mapping]] = ...) -> None: ...
