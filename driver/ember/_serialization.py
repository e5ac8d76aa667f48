"""Values to bytes and back: cloudpickle with pickle protocol 5 out-of-band buffers.

One layout serves inline values (sent in messages) and values in the shared-memory store:

    header  "EMB1" | n_buffers u32 | main_len u64 | n_buffers x u64 lengths
    main    the pickle stream
    buffers each out-of-band buffer, starting on a 64-byte boundary

Read from a read-only mapping of the store, a numpy array comes back zero-copy and read-only.
While a value is pickled, every ``ObjectRef`` inside it is recorded, so the caller can pin the
objects a value refers to for as long as the value lives.
"""

from __future__ import annotations

import pickle
import struct
import threading
from typing import Any

import cloudpickle

_MAGIC = b"EMB1"
_FIXED = struct.Struct("<4sIQ")
_ALIGN = 64
_local = threading.local()


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


class Serialized:
    """A pickled value: its pickle stream, out-of-band buffers, and the refs it contains."""

    __slots__ = ("main", "buffers", "contained", "_lengths", "header", "total")

    def __init__(self, main: bytes, buffers: list[memoryview], contained: list[bytes]) -> None:
        self.main = main
        self.buffers = buffers
        self.contained = contained
        self._lengths = [b.nbytes for b in buffers]
        self.header = _FIXED.pack(_MAGIC, len(buffers), len(main)) + struct.pack(
            f"<{len(buffers)}Q", *self._lengths
        )
        total = len(self.header) + len(main)
        for n in self._lengths:
            total = _align(total) + n
        self.total = total

    def to_bytes(self) -> bytes:
        if not self.buffers:
            return self.header + self.main
        out = bytearray(self.total)
        self.write_into(memoryview(out))
        return bytes(out)

    def parts(self) -> list[Any]:
        """The layout as consecutive buffers (padding included), for streaming without a copy."""
        out: list[Any] = [self.header, self.main]
        pos = len(self.header) + len(self.main)
        for buf, n in zip(self.buffers, self._lengths, strict=True):
            pad = _align(pos) - pos
            if pad:
                out.append(bytes(pad))
            out.append(buf)
            pos += pad + n
        return out

    def write_into(self, dest: memoryview) -> None:
        """Copy the value into ``dest`` (at least ``total`` bytes)."""
        pos = len(self.header)
        dest[:pos] = self.header
        end = pos + len(self.main)
        dest[pos:end] = self.main
        pos = end
        for buf, n in zip(self.buffers, self._lengths, strict=True):
            pos = _align(pos)
            dest[pos : pos + n] = buf
            pos += n


def note_contained_ref(object_id: bytes) -> None:
    """Called by ``ObjectRef.__reduce__``: record a ref found inside the value being pickled."""
    acc = getattr(_local, "contained", None)
    if acc is not None:
        acc.append(object_id)


def serialize(value: Any) -> Serialized:
    """Pickle ``value``; raise TypeError naming the value when it cannot be pickled."""
    buffers: list[memoryview] = []
    prev = getattr(_local, "contained", None)
    contained: list[bytes] = []
    _local.contained = contained
    try:
        main = cloudpickle.dumps(value, protocol=5, buffer_callback=lambda b: buffers.append(b.raw()))
    except Exception as exc:  # noqa: BLE001 - any pickling failure becomes one clear error
        raise TypeError(
            f"cannot serialize {_describe(value)}: {exc}. Values passed to or returned from "
            f"remote functions, and values given to put(), must be picklable."
        ) from exc
    finally:
        _local.contained = prev
    return Serialized(main, buffers, contained)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


def deserialize(data: bytes | bytearray | memoryview) -> Any:
    """Rebuild a value from the layout above; buffers are views into ``data`` (no copy)."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    magic, nbuf, main_len = _FIXED.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError("corrupt object: bad header")
    pos = _FIXED.size
    lengths = struct.unpack_from(f"<{nbuf}Q", view, pos)
    pos += 8 * nbuf
    main = view[pos : pos + main_len]
    pos += main_len
    bufs = []
    for n in lengths:
        pos = _align(pos)
        bufs.append(view[pos : pos + n])
        pos += n
    return pickle.loads(main, buffers=bufs)


def dumps_function(fn: Any) -> tuple[bytes, list[bytes]]:
    """Pickle a function or class for workers, keeping its source file name for tracebacks.

    cloudpickle replaces the file name of code it pickles by value with "<dynamic-code>";
    we ship the real one alongside and put it back in the worker (``loads_function``).
    """
    code = getattr(fn, "__code__", None)
    filename = code.co_filename if code is not None else _class_filename(fn)
    return dumps_with_refs((fn, filename))


def _class_filename(cls: Any) -> str | None:
    for member in vars(cls).values() if isinstance(cls, type) else ():
        code = getattr(getattr(member, "__func__", member), "__code__", None)
        if code is not None:
            return code.co_filename
    return None


def loads_function(blob: bytes) -> Any:
    """The inverse of ``dumps_function``."""
    fn, filename = pickle.loads(blob)
    if filename:
        if isinstance(fn, type):
            for cls in fn.__mro__:
                for member in vars(cls).values():
                    _set_filename(getattr(member, "__func__", member), filename)
        else:
            _set_filename(fn, filename)
    return fn


def _set_filename(fn: Any, filename: str) -> None:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_filename == "<dynamic-code>":
        try:
            fn.__code__ = _with_filename(code, filename)
        except (TypeError, ValueError, AttributeError):
            pass


def _with_filename(code: Any, filename: str) -> Any:
    consts = tuple(_with_filename(c, filename) if hasattr(c, "co_filename") else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def dumps_with_refs(value: Any) -> tuple[bytes, list[bytes]]:
    """cloudpickle a value, returning its blob and the refs found inside it."""
    prev = getattr(_local, "contained", None)
    contained: list[bytes] = []
    _local.contained = contained
    try:
        return cloudpickle.dumps(value, protocol=5), contained
    finally:
        _local.contained = prev


def pickle_strings(blob: bytes | memoryview) -> list[str]:
    """The text strings inside a serialized value (not the module and class names it refers
    to), read without unpickling it (nothing is imported or built), so an agent can describe
    an error value it must not load. A stream
    cut short yields the strings before the cut; anything unreadable yields []."""
    import pickletools

    view = memoryview(blob)
    if len(view) < _FIXED.size:
        return []
    magic, nbuf, main_len = _FIXED.unpack_from(view, 0)
    if magic != _MAGIC:
        return []
    start = _FIXED.size + 8 * nbuf
    main = bytes(view[start:start + main_len])
    out: list[str | None] = []  # None: a value fetched from the memo (maybe a module name)
    try:
        for op, arg, _pos in pickletools.genops(main):
            if op.name == "STACK_GLOBAL":  # the two items before it are module and name
                del out[len(out) - min(2, len(out)):]
            elif op.name.endswith("GET"):
                out.append(None)
            elif op.name not in ("GLOBAL", "INST") and isinstance(arg, str):
                out.append(arg)
    except Exception:  # noqa: BLE001 - a truncated or odd stream: keep what was read
        pass
    return [s for s in out if s is not None]
