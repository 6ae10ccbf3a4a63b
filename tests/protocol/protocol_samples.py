"""Representative bodies generated from the codec's own schema, for round-trip tests.

Every field present in a version gets a non-default value (so a field the encoder
dropped or misplaced shows up as a difference), or null in the ``nulls`` variant
wherever the version allows null.
"""

from __future__ import annotations

from typing import Any

from flexlog.gateway.protocol.messages import APIS
from flexlog.gateway.protocol.schema import Field, Scalar, StructOf, field_default

_SCALARS: dict[str, Any] = {
    "int8": -7,
    "int16": 300,
    "int32": -100_000,
    "int64": 2**40 + 3,
    "uint16": 65_000,
    "float64": 1.5,
    "bool": True,
    "uuid": bytes(range(16)),
    "records": b"\x00" * 8 + b"opaque-batch",
}


def _scalar(kind: str, name: str) -> Any:
    if kind == "string":
        return f"{name}-é"  # non-ASCII: lengths are in UTF-8 bytes, not characters
    if kind == "bytes":
        return b"\x00\xff" + name.encode()
    return _SCALARS[kind]


def sample_body(fields: tuple[Field, ...], version: int, flexible: bool, nulls: bool) -> dict:
    body: dict[str, Any] = {}
    for f in fields:
        if not f.exists_in(version) or (f.tag is not None and not flexible):
            continue
        if f.tag is not None and nulls:
            body[f.name] = field_default(f, version)
        elif nulls and f.nullable_in(version):
            body[f.name] = None
        else:
            body[f.name] = _value(f, version, flexible, nulls)
    return body


def _value(f: Field, version: int, flexible: bool, nulls: bool) -> Any:
    ftype = f.type
    if isinstance(ftype, Scalar):
        return _scalar(ftype.kind, f.name)
    if isinstance(ftype, StructOf):
        return sample_body(ftype.fields, version, flexible, nulls)
    element = ftype.element
    if isinstance(element, Scalar):
        return [_scalar(element.kind, f"{f.name}{i}") for i in range(2)]
    count = 1 if nulls else 2
    return [sample_body(element.fields, version, flexible, nulls) for _ in range(count)]


def all_versions() -> list[tuple[int, int]]:
    return [
        (key, version)
        for key, api in sorted(APIS.items())
        for version in range(api.versions[0], api.versions[1] + 1)
    ]


def sample(key: int, version: int, request: bool, nulls: bool = False) -> dict:
    api = APIS[key]
    fields = api.request if request else api.response
    return sample_body(fields, version, api.is_flexible(version), nulls)
