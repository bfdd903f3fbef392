"""Data and output locations from requests: ``s3://bucket/key``, ``file:///path`` and plain local paths.

Every location a request names is read by one function, :func:`locate`, before anything
touches the file system: the create route (each ``s3Uri`` field), the console's data check,
and the worker, which locates its job's URIs again against its own server's roots before it
reads or writes (:func:`fetch` and :func:`publish` take only a :class:`Location`). How each
form is read:

- ``s3://bucket/key``: literally. The key is never percent-decoded (``s3://b/a%20b`` is the
  key ``a%20b``, as the AWS CLI reads it), nor is ``?`` or ``#`` special in it; a bucket is
  required. S3 goes through boto3 against whatever endpoint the standard AWS settings name
  (for example ``AWS_ENDPOINT_URL_S3``).
- ``file:///path`` (or ``file://localhost/path``): the path is percent-decoded exactly once,
  as UTF-8: ``%20`` is a space, ``%2500`` the three characters ``%00`` (never NUL). Another
  host, a query or a fragment is refused (in a file name, write ``?`` as ``%3F``, ``#`` as ``%23``).
- Anything else is a plain path, never percent-decoded (``/data/%00`` names a file called
  ``%00``): a leading ``~`` is the server user's home, a relative path is relative to the
  server's working folder. Other schemes (``http://``, ``S3://``, ``file:/x``) are refused.

Refused whatever the form: a control character (U+0000-U+001F, U+007F-U+009F), sent raw or
percent-encoded; a lone surrogate; a local path longer than file systems take (4096 bytes, 255
a name). A local path must lie inside the allowed roots once ``..`` and symlinks are resolved
(the roots are resolved too), and files are then opened by that resolved path, so a request
cannot read or write elsewhere on the machine.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")
UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_PATH_BYTES = 4096
"""PATH_MAX on Linux: a longer path fails in every file system call."""
MAX_NAME_BYTES = 255
"""NAME_MAX on Linux and macOS: the longest one file or folder name may be."""
SHOWN_CHARS = 200
"""Longer URIs are shortened in messages."""


class UriError(ValueError):
    """Why a location from a request is refused (the message names the URI; callers add the field)."""


@dataclass(frozen=True)
class Location:
    """A location that :func:`locate` accepted."""

    uri: str
    """As the request sent it."""
    path: Path | None = None
    """A local location: resolved (no ``..``, no symlinks) and inside the allowed roots; None for S3."""
    bucket: str = ""
    key: str = ""
    """An S3 location's bucket and key (literal, leading slashes removed)."""

    @property
    def is_s3(self) -> bool:
        return self.path is None


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def shown(uri: str) -> str:
    """``uri`` quoted for a message: control characters and lone surrogates escaped, a long one shortened."""
    text = UNSHOWABLE.sub(lambda m: repr(m[0])[1:-1], uri)
    if len(text) > SHOWN_CHARS:
        text = f"{text[:150]}...{text[-40:]} ({len(uri)} characters)"
    return f"'{text}'"


def _control(text: str) -> str | None:
    """The first control character of ``text`` as U+XXXX, or None."""
    found = CONTROL.search(text)
    return f"U+{ord(found[0]):04X}" if found else None


def locate(uri: str, allowed_roots: Sequence[str]) -> Location:
    """Read ``uri`` as the module docstring says; UriError says why it is refused."""
    if not isinstance(uri, str) or not uri:
        raise UriError("a URI is required")
    if SURROGATE.search(uri):
        raise UriError(f"{shown(uri)} contains a lone surrogate, which is not a character")
    control = _control(uri)
    if control:
        raise UriError(f"{shown(uri)} contains a control character ({control}); control characters are refused")
    if is_s3(uri):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise UriError(f"{shown(uri)} has no bucket")
        return Location(uri, bucket=bucket, key=key.lstrip("/"))
    if uri.startswith("file:"):
        path = _file_path(uri)
    elif "://" in uri:
        raise UriError(f"{shown(uri)} is not an s3://, file:// or local path")
    else:
        path = uri
    return Location(uri, path=_inside(uri, path, allowed_roots))


def _file_path(uri: str) -> str:
    """The path of a ``file://`` URI, percent-decoded once."""
    if not uri.startswith("file://"):
        raise UriError(f"{shown(uri)} is not a file:// URI; write file:///path")
    rest = uri[len("file://"):]
    host, slash, path = rest.partition("/")
    if host not in ("", "localhost"):
        raise UriError(f"{shown(uri)} names the host '{host}'; a file:// URI here is file:///path or file://localhost/path")
    if "?" in path or "#" in path:
        raise UriError(f"{shown(uri)} has a query or fragment; in a file name, write ? as %3F and # as %23")
    try:
        decoded = unquote(slash + path, errors="strict")
    except UnicodeDecodeError:
        raise UriError(f"{shown(uri)} is not UTF-8 once percent-decoded") from None
    control = _control(decoded)
    if control:
        raise UriError(f"{shown(uri)} decodes to a control character ({control}); control characters are refused")
    if not decoded:
        raise UriError(f"{shown(uri)} has no path")
    return decoded


def _inside(uri: str, path: str, allowed_roots: Sequence[str]) -> Path:
    """``path`` resolved, if that lies inside one of ``allowed_roots``."""
    size = len(path.encode())
    if size > MAX_PATH_BYTES:
        raise UriError(f"{shown(uri)} is a path of {size} bytes; the longest a file system takes is {MAX_PATH_BYTES}")
    longest = max(path.split("/"), key=lambda name: len(name.encode()))
    if len(longest.encode()) > MAX_NAME_BYTES:
        raise UriError(f"{shown(uri)} has a name of {len(longest.encode())} bytes; the longest a file system takes is {MAX_NAME_BYTES}")
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop; an unknown ~user
        raise UriError(f"{shown(uri)} cannot be resolved: {exc}") from None
    roots = [Path(r).resolve() for r in allowed_roots]
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    where = "" if str(resolved) == path else f": it resolves to {shown(str(resolved))}"
    folders = ", ".join(str(r) for r in roots)
    raise UriError(f"{shown(uri)} is outside the folders this server may use ({folders}){where}; start it with --allow-path to add one")


def s3_client():
    """A boto3 S3 client; boto3 reads the endpoint (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``) itself."""
    import boto3

    return boto3.client("s3")


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``, read literally (the key without leading or trailing slashes)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def fetch(location: Location, folder: Path, name: str) -> Path:
    """A local file with the contents of ``location`` (S3 objects are downloaded into ``folder``)."""
    if location.path is not None:
        if not location.path.is_file():
            raise FileNotFoundError(f"{location.uri} does not exist or is not a file")
        return location.path
    target = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    s3_client().download_file(location.bucket, location.key, str(target))
    return target


def publish(source: Path, location: Location, relative: str) -> str:
    """Copy the file ``source`` to ``location``/``relative``; returns where it went.

    Locally, the target must resolve inside ``location`` (a symlink made there after the job
    was checked cannot send the file elsewhere)."""
    if location.is_s3:
        key = "/".join(p for p in (location.key.strip("/"), relative) if p)
        s3_client().upload_file(str(source), location.bucket, key)
        return f"s3://{location.bucket}/{key}"
    target = location.path / relative
    if not target.resolve().is_relative_to(location.path):
        raise UriError(f"{shown(str(target))} resolves to {shown(str(target.resolve()))}, outside {shown(location.uri)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return str(target)
