from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendOp(_message.Message):
    __slots__ = ("token", "color", "owner", "count", "payload", "contiguous")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CONTIGUOUS_FIELD_NUMBER: _ClassVar[int]
    token: int
    color: int
    owner: int
    count: int
    payload: bytes
    contiguous: bool
    def __init__(self, token: _Optional[int] = ..., color: _Optional[int] = ..., owner: _Optional[int] = ..., count: _Optional[int] = ..., payload: _Optional[bytes] = ..., contiguous: _Optional[bool] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[AppendOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[AppendOp, _Mapping]]] = ...) -> None: ...

class AppendError(_message.Message):
    __slots__ = ("token", "error", "message")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: int
    error: int
    message: str
    def __init__(self, token: _Optional[int] = ..., error: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class AppendReply(_message.Message):
    __slots__ = ("tokens", "sns", "errors")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SNS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    sns: _containers.RepeatedScalarFieldContainer[int]
    errors: _containers.RepeatedCompositeFieldContainer[AppendError]
    def __init__(self, tokens: _Optional[_Iterable[int]] = ..., sns: _Optional[_Iterable[int]] = ..., errors: _Optional[_Iterable[_Union[AppendError, _Mapping]]] = ...) -> None: ...

class QueryOp(_message.Message):
    __slots__ = ("id", "kind", "color", "sn", "max_bytes", "wait_ms", "contiguous", "end", "sns", "counts", "payloads", "tokens", "with_tokens", "skip_sns", "skip_counts")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        READ: _ClassVar[QueryOp.Kind]
        RANGE: _ClassVar[QueryOp.Kind]
        STATE: _ClassVar[QueryOp.Kind]
        TRIM: _ClassVar[QueryOp.Kind]
        SEAL: _ClassVar[QueryOp.Kind]
        FILL: _ClassVar[QueryOp.Kind]
    READ: QueryOp.Kind
    RANGE: QueryOp.Kind
    STATE: QueryOp.Kind
    TRIM: QueryOp.Kind
    SEAL: QueryOp.Kind
    FILL: QueryOp.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    SN_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    CONTIGUOUS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SNS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    WITH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SKIP_SNS_FIELD_NUMBER: _ClassVar[int]
    SKIP_COUNTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: QueryOp.Kind
    color: int
    sn: int
    max_bytes: int
    wait_ms: int
    contiguous: bool
    end: int
    sns: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    payloads: _containers.RepeatedScalarFieldContainer[bytes]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    with_tokens: bool
    skip_sns: _containers.RepeatedScalarFieldContainer[int]
    skip_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[_Union[QueryOp.Kind, str]] = ..., color: _Optional[int] = ..., sn: _Optional[int] = ..., max_bytes: _Optional[int] = ..., wait_ms: _Optional[int] = ..., contiguous: _Optional[bool] = ..., end: _Optional[int] = ..., sns: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ..., payloads: _Optional[_Iterable[bytes]] = ..., tokens: _Optional[_Iterable[int]] = ..., with_tokens: _Optional[bool] = ..., skip_sns: _Optional[_Iterable[int]] = ..., skip_counts: _Optional[_Iterable[int]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[QueryOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[QueryOp, _Mapping]]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("id", "error", "message", "sns", "counts", "payloads", "log_start", "tail", "tokens")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SNS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    LOG_START_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    id: int
    error: int
    message: str
    sns: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    payloads: _containers.RepeatedScalarFieldContainer[bytes]
    log_start: int
    tail: int
    tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., error: _Optional[int] = ..., message: _Optional[str] = ..., sns: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ..., payloads: _Optional[_Iterable[bytes]] = ..., log_start: _Optional[int] = ..., tail: _Optional[int] = ..., tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class QueryReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ...) -> None: ...

class ColorTail(_message.Message):
    __slots__ = ("color", "tail")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    color: int
    tail: int
    def __init__(self, color: _Optional[int] = ..., tail: _Optional[int] = ...) -> None: ...

class ReplicaToSequencer(_message.Message):
    __slots__ = ("shard", "replica", "tails", "tokens", "colors", "owners", "counts", "epoch", "recent_tokens", "recent_colors", "recent_sns", "recent_counts")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    TAILS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COLORS_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RECENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RECENT_COLORS_FIELD_NUMBER: _ClassVar[int]
    RECENT_SNS_FIELD_NUMBER: _ClassVar[int]
    RECENT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    replica: int
    tails: _containers.RepeatedCompositeFieldContainer[ColorTail]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    colors: _containers.RepeatedScalarFieldContainer[int]
    owners: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    epoch: int
    recent_tokens: _containers.RepeatedScalarFieldContainer[int]
    recent_colors: _containers.RepeatedScalarFieldContainer[int]
    recent_sns: _containers.RepeatedScalarFieldContainer[int]
    recent_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shard: _Optional[int] = ..., replica: _Optional[int] = ..., tails: _Optional[_Iterable[_Union[ColorTail, _Mapping]]] = ..., tokens: _Optional[_Iterable[int]] = ..., colors: _Optional[_Iterable[int]] = ..., owners: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ..., epoch: _Optional[int] = ..., recent_tokens: _Optional[_Iterable[int]] = ..., recent_colors: _Optional[_Iterable[int]] = ..., recent_sns: _Optional[_Iterable[int]] = ..., recent_counts: _Optional[_Iterable[int]] = ...) -> None: ...

class GrantError(_message.Message):
    __slots__ = ("token", "color", "error", "message")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: int
    color: int
    error: int
    message: str
    def __init__(self, token: _Optional[int] = ..., color: _Optional[int] = ..., error: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class SequencerToReplica(_message.Message):
    __slots__ = ("tokens", "colors", "sns", "counts", "errors")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COLORS_FIELD_NUMBER: _ClassVar[int]
    SNS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    colors: _containers.RepeatedScalarFieldContainer[int]
    sns: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    errors: _containers.RepeatedCompositeFieldContainer[GrantError]
    def __init__(self, tokens: _Optional[_Iterable[int]] = ..., colors: _Optional[_Iterable[int]] = ..., sns: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ..., errors: _Optional[_Iterable[_Union[GrantError, _Mapping]]] = ...) -> None: ...

class ForwardReq(_message.Message):
    __slots__ = ("id", "color", "owner", "count")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    id: int
    color: int
    owner: int
    count: int
    def __init__(self, id: _Optional[int] = ..., color: _Optional[int] = ..., owner: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class ChildToParent(_message.Message):
    __slots__ = ("child", "parent", "shards_ready", "tails", "reqs")
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
    def __init__(self, child: _Optional[int] = ..., parent: _Optional[int] = ..., shards_ready: _Optional[_Iterable[int]] = ..., tails: _Optional[_Iterable[_Union[ColorTail, _Mapping]]] = ..., reqs: _Optional[_Iterable[_Union[ForwardReq, _Mapping]]] = ...) -> None: ...

class ForwardGrant(_message.Message):
    __slots__ = ("id", "sn", "error", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    SN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    sn: int
    error: int
    message: str
    def __init__(self, id: _Optional[int] = ..., sn: _Optional[int] = ..., error: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ParentToChild(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[ForwardGrant]
    def __init__(self, grants: _Optional[_Iterable[_Union[ForwardGrant, _Mapping]]] = ...) -> None: ...

class NextSnRequest(_message.Message):
    __slots__ = ("color", "owner")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    color: int
    owner: int
    def __init__(self, color: _Optional[int] = ..., owner: _Optional[int] = ...) -> None: ...

class NextSnReply(_message.Message):
    __slots__ = ("next_sn", "error", "message")
    NEXT_SN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    next_sn: int
    error: int
    message: str
    def __init__(self, next_sn: _Optional[int] = ..., error: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("detail",)
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    detail: bool
    def __init__(self, detail: _Optional[bool] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("role", "name", "ready", "detail", "incarnation", "epoch", "caught_up_epoch", "readable", "tiers")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_EPOCH_FIELD_NUMBER: _ClassVar[int]
    READABLE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    role: str
    name: str
    ready: bool
    detail: str
    incarnation: int
    epoch: int
    caught_up_epoch: int
    readable: bool
    tiers: _containers.RepeatedCompositeFieldContainer[StoreTier]
    def __init__(self, role: _Optional[str] = ..., name: _Optional[str] = ..., ready: _Optional[bool] = ..., detail: _Optional[str] = ..., incarnation: _Optional[int] = ..., epoch: _Optional[int] = ..., caught_up_epoch: _Optional[int] = ..., readable: _Optional[bool] = ..., tiers: _Optional[_Iterable[_Union[StoreTier, _Mapping]]] = ...) -> None: ...

class StoreTier(_message.Message):
    __slots__ = ("name", "path", "used_bytes", "capacity_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    used_bytes: int
    capacity_bytes: int
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ...) -> None: ...

class ColorsRequest(_message.Message):
    __slots__ = ("start", "limit", "bytes_of")
    START_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BYTES_OF_FIELD_NUMBER: _ClassVar[int]
    start: int
    limit: int
    bytes_of: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, start: _Optional[int] = ..., limit: _Optional[int] = ..., bytes_of: _Optional[_Iterable[int]] = ...) -> None: ...

class ColorState(_message.Message):
    __slots__ = ("color", "log_start", "tail", "high", "tier_bytes")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    LOG_START_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    TIER_BYTES_FIELD_NUMBER: _ClassVar[int]
    color: int
    log_start: int
    tail: int
    high: int
    tier_bytes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, color: _Optional[int] = ..., log_start: _Optional[int] = ..., tail: _Optional[int] = ..., high: _Optional[int] = ..., tier_bytes: _Optional[_Iterable[int]] = ...) -> None: ...

class ColorsReply(_message.Message):
    __slots__ = ("colors", "more")
    COLORS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    colors: _containers.RepeatedCompositeFieldContainer[ColorState]
    more: bool
    def __init__(self, colors: _Optional[_Iterable[_Union[ColorState, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...
