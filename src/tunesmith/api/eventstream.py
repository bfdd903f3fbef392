"""AWS event-stream framing (``application/vnd.amazon.eventstream``), as botocore decodes it.

A message: total length, headers length, CRC32 of those 8 bytes, headers, payload, CRC32 of
everything before it. Headers here are strings (type 7): ``:event-type``, ``:content-type``
and ``:message-type``.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

_STRING = 7


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack("!B", len(name_bytes)) + name_bytes + struct.pack("!BH", _STRING, len(value_bytes)) + value_bytes


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    header_bytes = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + header_bytes + payload
    return body + struct.pack("!I", binascii.crc32(body) & 0xFFFFFFFF)


def event(event_type: str, data: dict[str, Any]) -> bytes:
    """One event of a ConverseStream response."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(data).encode())


def exception(error_type: str, message: str) -> bytes:
    headers = {":exception-type": error_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())
