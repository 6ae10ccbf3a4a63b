"""``construct`` types for Kafka's primitives, arrays and structs.

They exist only in compiled form: each emits Python source (``_emitparse`` /
``_emitbuild``) that calls the helpers in ``wire.py``, and ``Construct.compile()``
turns a whole message into one generated module. Parsers read a ``BytesIO``;
builders write into a ``wire.ChunkWriter``. Kafka never needs construct's context
(``this``), so the generated code skips it, and a run of consecutive fixed-size
fields is read or written by a single ``struct`` call: that is what keeps a
Produce parse in the single-digit microseconds.

Struct semantics the generic ``construct.Struct`` lacks and Kafka needs:
- a field missing from a body being built takes its schema default, while an
  explicit ``None`` stays null;
- flexible versions end every struct with a tagged-field buffer whose known tags
  land in the same result dict as the ordinary fields (unknown ones are skipped),
  and whose values are only written when they differ from the default.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from construct import CodeGen, Construct, Struct

from . import wire

_IMPORT_WIRE = f"from {wire.__name__} import *"


def _literal(value: Any) -> str:
    """Python source that evaluates to a fresh copy of a default value."""
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={_literal(v)}" for k, v in value.items())
        return f"Container({inner})"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _block(lines: list[str]) -> str:
    return "\n".join(lines)


class Primitive(Construct):
    """A scalar emitted as one expression over ``io`` (parse) or ``io``/``obj`` (build).

    ``fmt`` is the ``struct`` format of fixed-size scalars, which lets a struct read or
    write a run of them with a single ``unpack``/``pack``.
    """

    def __init__(self, kind: str, parse_src: str, build_src: str, fmt: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.parse_src = parse_src
        self.build_src = build_src
        self.fmt = fmt

    def _emitparse(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        return self.parse_src

    def _emitbuild(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        return self.build_src

    def __repr__(self) -> str:
        return f"<Primitive {self.kind}>"


def _fixed(kind: str, fmt: str, packer: str) -> Primitive:
    """``packer`` names the matching ``struct.Struct`` in ``wire``."""
    size = struct.calcsize(">" + fmt)
    return Primitive(
        kind, f"{packer}.unpack(io.read({size}))[0]", f"io.write({packer}.pack(obj))", fmt
    )


def _called(kind: str, name: str) -> Primitive:
    return Primitive(kind, f"read_{name}(io)", f"write_{name}(io, obj)")


_FIXED_PRIMITIVES = {
    "int8": _fixed("int8", "b", "I8"),
    "int16": _fixed("int16", "h", "I16"),
    "int32": _fixed("int32", "i", "I32"),
    "int64": _fixed("int64", "q", "I64"),
    "uint16": _fixed("uint16", "H", "U16"),
    "float64": _fixed("float64", "d", "F64"),
    # "?" reads any non-zero byte as true, which is what Kafka's readers do.
    "bool": _fixed("bool", "?", "BOOL"),
    "uuid": _called("uuid", "uuid"),
}


@cache
def primitive(kind: str, compact: bool, nullable: bool) -> Primitive:
    """The construct for a scalar type in one encoding (classic or compact)."""
    if kind in _FIXED_PRIMITIVES:
        return _FIXED_PRIMITIVES[kind]
    base = "string" if kind == "string" else "bytes"  # records are opaque nullable bytes
    name = ("compact_" if compact else "") + ("nullable_" if nullable else "") + base
    return _called(name, name)


class KafkaArray(Construct):
    """An int32-counted (classic) or varint-counted (compact) array; may be null."""

    def __init__(self, element: Construct, compact: bool, nullable: bool) -> None:
        super().__init__()
        self.element = element
        self.len_name = ("compact_" if compact else "") + ("nullable_" if nullable else "")
        self.len_name += "array_len"

    def _emitparse(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        fname = f"parse_array_{code.allocateId()}"
        element = self.element._compileparse(code)
        code.append(
            _block(
                [
                    f"def {fname}(io, this):",
                    f"    n = read_{self.len_name}(io)",
                    "    if n < 0:",
                    "        return None",
                    # Each element consumes at least one byte, so a forged count stops
                    # at the end of the frame instead of allocating up front.
                    f"    return [{element} for _ in range(n)]",
                ]
            )
        )
        return f"{fname}(io, this)"

    def _emitbuild(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        fname = f"build_array_{code.allocateId()}"
        element = self.element._compilebuild(code)
        code.append(
            _block(
                [
                    f"def {fname}(items, io, this):",
                    f"    write_{self.len_name}(io, items)",
                    "    if items is not None:",
                    "        for obj in items:",
                    f"            {element}",
                ]
            )
        )
        return f"{fname}(obj, io, this)"


class NullableStruct(Construct):
    """A struct that may be null: an int8 marker (-1 null, 1 present) before its fields.

    Kafka encodes nullable struct fields this way (ConsumerGroupHeartbeat's assignment).
    """

    def __init__(self, inner: Construct) -> None:
        super().__init__()
        self.inner = inner

    def _emitparse(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        fname = f"parse_nullable_struct_{code.allocateId()}"
        inner = self.inner._compileparse(code)
        code.append(_block([
            f"def {fname}(io, this):",
            "    if I8.unpack(io.read(1))[0] < 0:",
            "        return None",
            f"    return {inner}",
        ]))
        return f"{fname}(io, this)"

    def _emitbuild(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        fname = f"build_nullable_struct_{code.allocateId()}"
        inner = self.inner._compilebuild(code)
        code.append(_block([
            f"def {fname}(obj, io, this):",
            "    io.write(I8.pack(-1 if obj is None else 1))",
            "    if obj is not None:",
            f"        {inner}",
        ]))
        return f"{fname}(obj, io, this)"


@dataclass(frozen=True)
class StructField:
    """One field of a struct at one version, ready for code generation."""

    name: str
    con: Construct
    default: Any
    tag: int | None = None


class KafkaStruct(Struct):
    """A Kafka struct at one version: ordinary fields, then (flexible) tagged fields."""

    def __init__(self, fields: Sequence[StructField], flexible: bool) -> None:
        plain = [f for f in fields if f.tag is None]
        super().__init__(*(f.name / f.con for f in plain))
        self.plain = plain
        self.tagged = sorted((f for f in fields if f.tag is not None), key=lambda f: f.tag)
        self.flexible = flexible

    def _runs(self) -> list[list[StructField]]:
        """Consecutive fixed-size fields grouped, so one ``struct`` call handles each run."""
        runs: list[list[StructField]] = []
        for f in self.plain:
            fixed = _fmt(f) is not None
            if fixed and runs and _fmt(runs[-1][0]) is not None:
                runs[-1].append(f)
            else:
                runs.append([f])
        return runs

    def _packer(self, code: CodeGen, run: list[StructField]) -> str:
        fmt = ">" + "".join(_fmt(f) or "" for f in run)
        name = "S_" + fmt[1:].replace("?", "_bool_")
        code.append(f"{name} = struct.Struct({fmt!r})")
        return name

    def _emitparse(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        uid = code.allocateId()
        fname = f"parse_struct_{uid}"
        lines = [f"def {fname}(io, this):"]
        for run in self._runs():
            if _fmt(run[0]) is None:
                lines.append(f"    f_{run[0].name} = {run[0].con._compileparse(code)}")
            else:
                packer = self._packer(code, run)
                targets = "".join(f"f_{f.name}, " for f in run)
                lines.append(f"    {targets}= {packer}.unpack(io.read({packer}.size))")
        args = [f"{f.name}=f_{f.name}" for f in self.plain]
        args += [f"{f.name}={_literal(f.default)}" for f in self.tagged]
        lines.append(f"    result = Container({', '.join(args)})")
        if self.tagged:
            decoders = ", ".join(
                f"{f.tag}: ({f.name!r}, lambda io, this: {f.con._compileparse(code)})"
                for f in self.tagged
            )
            code.append(f"tags_{uid} = {{{decoders}}}")
            lines.append(f"    read_tags(io, result, tags_{uid})")
        elif self.flexible:
            lines.append("    tags = io.read(1)")
            lines.append("    if tags != b'\\x00':")
            lines.append("        skip_tags_from(io, tags)")
        lines.append("    return result")
        code.append(_block(lines))
        return f"{fname}(io, this)"

    def _emitbuild(self, code: CodeGen) -> str:
        code.append(_IMPORT_WIRE)
        uid = code.allocateId()
        fname = f"build_struct_{uid}"
        lines = [f"def {fname}(fields, io, this):"]
        for run in self._runs():
            if _fmt(run[0]) is None:
                f = run[0]
                lines.append(f"    obj = fields.get({f.name!r}, {_build_default(f.default)})")
                lines.append(f"    {f.con._compilebuild(code)}")
            else:
                values = ", ".join(f"fields.get({f.name!r}, {f.default!r})" for f in run)
                lines.append(f"    io.write({self._packer(code, run)}.pack({values}))")
        if self.tagged:
            lines.append("    tagged = []")
            for f in self.tagged:
                enc = f"tagenc_{uid}_{f.tag}"
                code.append(f"{enc} = lambda obj, io, this: {f.con._compilebuild(code)}")
                code.append(f"tagdef_{uid}_{f.tag} = encode_value({enc}, {_literal(f.default)})")
                # The default's encoding doubles as the "field absent" sentinel.
                lines += [
                    f"    obj = fields.get({f.name!r}, tagdef_{uid}_{f.tag})",
                    f"    if obj is not tagdef_{uid}_{f.tag}:",
                    f"        data = encode_value({enc}, obj)",
                    # Kafka leaves a tagged field out when it holds its default value.
                    f"        if data != tagdef_{uid}_{f.tag}:",
                    f"            tagged.append(({f.tag}, data))",
                ]
            lines.append("    write_tags(io, tagged)")
        elif self.flexible:
            lines.append("    io.write(b'\\x00')")
        lines.append("    return fields")
        code.append(_block(lines))
        return f"{fname}(obj, io, this)"


def _fmt(f: StructField) -> str | None:
    return f.con.fmt if isinstance(f.con, Primitive) else None


def _build_default(value: Any) -> str:
    # Builders only read defaults, so cheap shared literals are enough here.
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list | tuple):
        return "()"
    return repr(value)
