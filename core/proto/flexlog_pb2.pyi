from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

DESCRIPTOR: _descriptor.FileDescriptor

class AppendOp(_message.Message):
    __slots__ = ("color", "count", "owner", "payload", "token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    token: int
    color: int
    owner: int
    count: int
    payload: bytes
    def __init__(self, token: int | None = ..., color: int | None = ..., owner: int | None = ..., count: int | None = ..., payload: bytes | None = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[AppendOp]
    def __init__(self, ops: _Iterable[AppendOp | _Mapping] | None = ...) -> None: ...

class AppendAck(_message.Message):
    __slots__ = ("error", "message", "sn", "token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: int
    sn: int
    error: int
    message: str
    def __init__(self, token: int | None = ..., sn: int | None = ..., error: int | None = ..., message: str | None = ...) -> None: ...

class AppendReply(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[AppendAck]
    def __init__(self, acks: _Iterable[AppendAck | _Mapping] | None = ...) -> None: ...

class QueryOp(_message.Message):
    __slots__ = ("color", "contiguous", "id", "kind", "max_bytes", "sn", "wait_ms")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        READ: _ClassVar[QueryOp.Kind]
        RANGE: _ClassVar[QueryOp.Kind]
        STATE: _ClassVar[QueryOp.Kind]
        TRIM: _ClassVar[QueryOp.Kind]
    READ: QueryOp.Kind
    RANGE: QueryOp.Kind
    STATE: QueryOp.Kind
    TRIM: QueryOp.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    SN_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    CONTIGUOUS_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: QueryOp.Kind
    color: int
    sn: int
    max_bytes: int
    wait_ms: int
    contiguous: bool
    def __init__(self, id: int | None = ..., kind: QueryOp.Kind | str | None = ..., color: int | None = ..., sn: int | None = ..., max_bytes: int | None = ..., wait_ms: int | None = ..., contiguous: bool | None = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[QueryOp]
    def __init__(self, ops: _Iterable[QueryOp | _Mapping] | None = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("counts", "error", "id", "log_start", "message", "payloads", "sns", "tail")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SNS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    LOG_START_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    error: int
    message: str
    sns: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    payloads: _containers.RepeatedScalarFieldContainer[bytes]
    log_start: int
    tail: int
    def __init__(self, id: int | None = ..., error: int | None = ..., message: str | None = ..., sns: _Iterable[int] | None = ..., counts: _Iterable[int] | None = ..., payloads: _Iterable[bytes] | None = ..., log_start: int | None = ..., tail: int | None = ...) -> None: ...

class QueryReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    def __init__(self, results: _Iterable[QueryResult | _Mapping] | None = ...) -> None: ...

class ColorTail(_message.Message):
    __slots__ = ("color", "tail")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    color: int
    tail: int
    def __init__(self, color: int | None = ..., tail: int | None = ...) -> None: ...

class OrderReq(_message.Message):
    __slots__ = ("color", "count", "owner", "token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    token: int
    color: int
    owner: int
    count: int
    def __init__(self, token: int | None = ..., color: int | None = ..., owner: int | None = ..., count: int | None = ...) -> None: ...

class ReplicaToSequencer(_message.Message):
    __slots__ = ("replica", "reqs", "shard", "tails")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    TAILS_FIELD_NUMBER: _ClassVar[int]
    REQS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    replica: int
    tails: _containers.RepeatedCompositeFieldContainer[ColorTail]
    reqs: _containers.RepeatedCompositeFieldContainer[OrderReq]
    def __init__(self, shard: int | None = ..., replica: int | None = ..., tails: _Iterable[ColorTail | _Mapping] | None = ..., reqs: _Iterable[OrderReq | _Mapping] | None = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("color", "count", "error", "message", "sn", "token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    SN_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: int
    color: int
    sn: int
    count: int
    error: int
    message: str
    def __init__(self, token: int | None = ..., color: int | None = ..., sn: int | None = ..., count: int | None = ..., error: int | None = ..., message: str | None = ...) -> None: ...

class SequencerToReplica(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, grants: _Iterable[Grant | _Mapping] | None = ...) -> None: ...

class ForwardReq(_message.Message):
    __slots__ = ("color", "count", "id", "owner")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    id: int
    color: int
    owner: int
    count: int
    def __init__(self, id: int | None = ..., color: int | None = ..., owner: int | None = ..., count: int | None = ...) -> None: ...

class ChildToParent(_message.Message):
    __slots__ = ("child", "parent", "reqs", "shards_ready", "tails")
    CHILD_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SHARDS_READY_FIELD_NUMBER: _ClassVar[int]
    TAILS_FIELD_NUMBER: _ClassVar[int]
    REQS_FIELD_NUMBER: _ClassVar[int]
    child: int
    parent: int
    shards_ready: _containers.RepeatedScalarFieldContainer[int]
    tails: _containers.RepeatedCompositeFieldContainer[ColorTail]
    reqs: _containers.RepeatedCompositeFieldContainer[ForwardReq]
    def __init__(self, child: int | None = ..., parent: int | None = ..., shards_ready: _Iterable[int] | None = ..., tails: _Iterable[ColorTail | _Mapping] | None = ..., reqs: _Iterable[ForwardReq | _Mapping] | None = ...) -> None: ...

class ForwardGrant(_message.Message):
    __slots__ = ("error", "id", "message", "sn")
    ID_FIELD_NUMBER: _ClassVar[int]
    SN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    sn: int
    error: int
    message: str
    def __init__(self, id: int | None = ..., sn: int | None = ..., error: int | None = ..., message: str | None = ...) -> None: ...

class ParentToChild(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[ForwardGrant]
    def __init__(self, grants: _Iterable[ForwardGrant | _Mapping] | None = ...) -> None: ...

class NextSnRequest(_message.Message):
    __slots__ = ("color", "owner")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    color: int
    owner: int
    def __init__(self, color: int | None = ..., owner: int | None = ...) -> None: ...

class NextSnReply(_message.Message):
    __slots__ = ("error", "message", "next_sn")
    NEXT_SN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    next_sn: int
    error: int
    message: str
    def __init__(self, next_sn: int | None = ..., error: int | None = ..., message: str | None = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("detail", "name", "ready", "role")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    role: str
    name: str
    ready: bool
    detail: str
    def __init__(self, role: str | None = ..., name: str | None = ..., ready: bool | None = ..., detail: str | None = ...) -> None: ...
