"""Streaming JSON Lines reader that turns every way a file can be malformed into a Problem.

It reads one line at a time (memory is bounded by the longest line, itself capped), so a
100 MB file validates in a few megabytes. Records are yielded with their 1-based line number.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.datasets.problems import ProblemLog

MAX_LINE_BYTES = 16 * 1024 * 1024
"""A longer line is reported, not parsed: no sensible record is that long."""

_UTF16_32_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}
_NOT_REGULAR = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false"}


@dataclass(frozen=True)
class JsonLine:
    """One parsed record and where it came from."""

    line: int
    value: dict[str, Any]
    size: int
    """Bytes on disk, line ending excluded."""


def json_kind(value: Any) -> str:
    """How JSON would name a value's type: "an array", "a string", "null"..."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def json_repr(value: Any) -> str:
    """A value as it appears in JSON, shortened for messages."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


class _DuplicateKey(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def read_jsonl(
    path: Path, name: str, log: ProblemLog, on_bytes: Callable[[int], None] | None = None
) -> Iterator[JsonLine]:
    """Yield each JSON object in ``path``; log everything else against ``name``.

    ``on_bytes`` is called with the size of every line read (for progress bars).

    File-level problems (missing, not a regular file, binary, UTF-16, a JSON array) stop the
    read after one clear message; line-level problems are logged and reading goes on.
    """
    try:
        mode = os.stat(path).st_mode  # before opening: opening a FIFO blocks until a writer comes
        if stat.S_ISDIR(mode):
            log.error(name, None, "file", "is a directory, not a JSONL file")
            return
        if not stat.S_ISREG(mode):
            what = next((kind for is_kind, kind in _NOT_REGULAR.items() if is_kind(mode)), "a special file")
            log.error(name, None, "file", f"is not a regular file ({what})")
            return
        handle = path.open("rb")
    except FileNotFoundError:
        log.error(name, None, "file", "no such file")
        return
    except OSError as exc:
        log.error(name, None, "file", f"cannot be read: {exc.strerror or exc}")
        return
    with handle:
        yield from _read_lines(handle, name, log, on_bytes or (lambda n: None))


def _read_lines(handle, name: str, log: ProblemLog, on_bytes: Callable[[int], None]) -> Iterator[JsonLine]:
    head = handle.read(4)
    for bom, encoding in _UTF16_32_BOMS.items():
        if head.startswith(bom):
            log.error(name, None, "file", f"is {encoding} text: save it as UTF-8 (without a byte-order mark)")
            return
    if head.startswith(codecs.BOM_UTF8):
        log.warning(name, 1, "file", "starts with a UTF-8 byte-order mark (BOM); it was ignored")
        handle.seek(len(codecs.BOM_UTF8))
    else:
        handle.seek(0)

    line_number = 0
    crlf_lines = 0
    seen_content = False
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            break
        line_number += 1
        on_bytes(len(raw))
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            log.error(name, line_number, "record", f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MB; not read")
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                raw = handle.readline(MAX_LINE_BYTES)
            continue
        if raw.endswith(b"\r\n"):
            crlf_lines += 1
        body = raw.rstrip(b"\r\n")
        if b"\x00" in body:
            log.error(name, line_number, "file", "contains NUL bytes: this looks like a binary file, not JSON Lines text")
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            log.error(
                name,
                line_number,
                "record",
                f"is not valid UTF-8 (byte 0x{body[exc.start]:02x} at column {exc.start + 1}): save the file as UTF-8",
            )
            continue
        stripped = text.strip()
        if not stripped:
            log.warning(name, line_number, "record", "blank line skipped")
            continue
        if not seen_content and stripped.startswith("["):
            log.error(
                name,
                line_number,
                "file",
                "is a JSON array, not JSON Lines: write one JSON object per line "
                "(for example: jq -c '.[]' in.json > out.jsonl)",
            )
            return
        seen_content = True
        value = _parse(text, name, line_number, log)
        if value is not None:
            yield JsonLine(line_number, value, len(body))
    if crlf_lines:
        log.warning(name, None, "file", f"{crlf_lines} line(s) end in Windows CRLF; accepted")


def _parse(text: str, name: str, line_number: int, log: ProblemLog) -> dict[str, Any] | None:
    try:
        value = _decoder.decode(text)
    except _DuplicateKey as exc:
        log.error(name, line_number, "record", f'key "{exc}" appears twice in one JSON object')
        return None
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.pos >= len(text.rstrip()) - 1:
            hint = " (the record ends early: each record must be complete on one line)"
        log.error(name, line_number, "record", f"invalid JSON at column {exc.colno}: {exc.msg}{hint}")
        return None
    except ValueError as exc:  # NaN / Infinity constants
        log.error(name, line_number, "record", f"invalid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        log.error(name, line_number, "record", f"expected a JSON object {{...}}, got {json_kind(value)}")
        return None
    return value
