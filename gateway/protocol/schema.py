"""A small DSL describing Kafka messages, and its translation into ``construct`` types.

A message is a list of ``Field``s; each field says in which versions it exists,
in which it may be null, its default, and (for tagged fields) its tag. One
``Api`` pairs the request and response of an API key with the version range the
codec handles and the first flexible version. ``message_struct`` turns one
(api, version, direction) into a ``KafkaStruct`` that the codec compiles.

Version specs use Kafka's notation: ``"3+"``, ``"0-7"``, ``"5"``, ``"none"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from construct import Construct

from .types import KafkaArray, KafkaStruct, NullableStruct, StructField, primitive

MAX_VERSION = 0x7FFF

VersionRange = tuple[int, int]


@cache
def parse_versions(spec: str) -> VersionRange | None:
    if spec == "none":
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), MAX_VERSION
    low, _, high = spec.partition("-")
    return int(low), int(high or low)


def _within(version: int, versions: VersionRange | None) -> bool:
    return versions is not None and versions[0] <= version <= versions[1]


@dataclass(frozen=True)
class Scalar:
    kind: str


INT8 = Scalar("int8")
INT16 = Scalar("int16")
INT32 = Scalar("int32")
INT64 = Scalar("int64")
UINT16 = Scalar("uint16")
FLOAT64 = Scalar("float64")
BOOL = Scalar("bool")
STRING = Scalar("string")
BYTES = Scalar("bytes")
# Record batches are handed over as raw bytes; parsing them is the storage layer's job.
RECORDS = Scalar("records")
UUID = Scalar("uuid")

_SCALAR_DEFAULTS: dict[str, Any] = {
    "int8": 0,
    "int16": 0,
    "int32": 0,
    "int64": 0,
    "uint16": 0,
    "float64": 0.0,
    "bool": False,
    "string": "",
    "bytes": b"",
    # Kafka's own default would be null, but librdkafka rejects null Fetch records.
    "records": b"",
    "uuid": bytes(16),
}


@dataclass(frozen=True)
class StructOf:
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class ArrayOf:
    element: Scalar | StructOf


FieldType = Scalar | StructOf | ArrayOf


def array(element: Scalar | list[Field]) -> ArrayOf:
    """``array(INT32)`` or ``array([Field(...), ...])`` for an array of structs."""
    return ArrayOf(element if isinstance(element, Scalar) else StructOf(tuple(element)))


def struct(fields: list[Field]) -> StructOf:
    return StructOf(tuple(fields))


_NO_DEFAULT = object()


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    versions: str = "0+"
    nullable: str = "none"
    default: Any = _NO_DEFAULT
    tag: int | None = None

    def exists_in(self, version: int) -> bool:
        return _within(version, parse_versions(self.versions))

    def nullable_in(self, version: int) -> bool:
        return _within(version, parse_versions(self.nullable))


@dataclass(frozen=True)
class Api:
    key: int
    name: str
    versions: VersionRange
    flexible: int | None
    request: tuple[Field, ...] = field(repr=False)
    response: tuple[Field, ...] = field(repr=False)

    def is_flexible(self, version: int) -> bool:
        return self.flexible is not None and version >= self.flexible


def message_struct(api: Api, version: int, request: bool) -> KafkaStruct:
    fields = api.request if request else api.response
    return _struct(fields, version, api.is_flexible(version))


def _struct(fields: tuple[Field, ...], version: int, flexible: bool) -> KafkaStruct:
    out = []
    for f in fields:
        if not f.exists_in(version):
            continue
        if f.tag is not None and not flexible:
            continue
        nullable = f.nullable_in(version)
        out.append(
            StructField(
                name=f.name,
                con=_construct(f.type, version, flexible, nullable),
                default=field_default(f, version),
                tag=f.tag,
            )
        )
    return KafkaStruct(out, flexible)


def _construct(ftype: FieldType, version: int, flexible: bool, nullable: bool) -> Construct:
    if isinstance(ftype, Scalar):
        return primitive(ftype.kind, flexible, nullable)
    if isinstance(ftype, StructOf):
        inner = _struct(ftype.fields, version, flexible)
        return NullableStruct(inner) if nullable else inner
    element = _construct(ftype.element, version, flexible, nullable=False)
    return KafkaArray(element, flexible, nullable)


def field_default(f: Field, version: int) -> Any:
    if f.default is not _NO_DEFAULT:
        return f.default
    return type_default(f.type, version)


def type_default(ftype: FieldType, version: int) -> Any:
    if isinstance(ftype, Scalar):
        return _SCALAR_DEFAULTS[ftype.kind]
    if isinstance(ftype, ArrayOf):
        return []
    return {f.name: field_default(f, version) for f in ftype.fields if f.exists_in(version)}
