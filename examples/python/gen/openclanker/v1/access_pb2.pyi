import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Pairing(_message.Message):
    __slots__ = ("channel", "sender", "label", "code", "create_time", "expire_time")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    channel: str
    sender: str
    label: str
    code: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, channel: _Optional[str] = ..., sender: _Optional[str] = ..., label: _Optional[str] = ..., code: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AllowedSender(_message.Message):
    __slots__ = ("channel", "sender", "label", "create_time", "source")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    sender: str
    label: str
    create_time: _timestamp_pb2.Timestamp
    source: str
    def __init__(self, channel: _Optional[str] = ..., sender: _Optional[str] = ..., label: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class ListPairingsRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class ListPairingsResponse(_message.Message):
    __slots__ = ("pairings",)
    PAIRINGS_FIELD_NUMBER: _ClassVar[int]
    pairings: _containers.RepeatedCompositeFieldContainer[Pairing]
    def __init__(self, pairings: _Optional[_Iterable[_Union[Pairing, _Mapping]]] = ...) -> None: ...

class ApprovePairingRequest(_message.Message):
    __slots__ = ("channel", "code")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    code: str
    def __init__(self, channel: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ApprovePairingResponse(_message.Message):
    __slots__ = ("sender",)
    SENDER_FIELD_NUMBER: _ClassVar[int]
    sender: AllowedSender
    def __init__(self, sender: _Optional[_Union[AllowedSender, _Mapping]] = ...) -> None: ...

class RevokeSenderRequest(_message.Message):
    __slots__ = ("channel", "sender")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    channel: str
    sender: str
    def __init__(self, channel: _Optional[str] = ..., sender: _Optional[str] = ...) -> None: ...

class RevokeSenderResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAllowedRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class ListAllowedResponse(_message.Message):
    __slots__ = ("senders",)
    SENDERS_FIELD_NUMBER: _ClassVar[int]
    senders: _containers.RepeatedCompositeFieldContainer[AllowedSender]
    def __init__(self, senders: _Optional[_Iterable[_Union[AllowedSender, _Mapping]]] = ...) -> None: ...
