"""Data and output locations: ``s3://bucket/key``, ``file:///path`` and plain local paths.

S3 goes through boto3 against whatever endpoint the standard AWS settings name (for example
``AWS_ENDPOINT_URL_S3``). Local paths must lie inside the allowed roots after resolving
``..`` and symlinks, so a request cannot read or write elsewhere on the machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri).expanduser()


def check_uri(uri: str, allowed_roots: list[str]) -> str | None:
    """Why ``uri`` is unacceptable, or None."""
    if not isinstance(uri, str) or not uri:
        return "a URI is required"
    if is_s3(uri):
        parsed = urlparse(uri)
        if not parsed.netloc:
            return f"'{uri}' has no bucket"
        return None
    if "://" in uri and not uri.startswith("file://"):
        return f"'{uri}' is not an s3://, file:// or local path"
    path = local_path(uri).resolve()
    roots = [Path(r).resolve() for r in allowed_roots]
    if not any(path == root or path.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        return f"'{uri}' is outside the folders this server may use ({shown}); start it with --allow-path to add one"
    return None


def s3_client():
    """A boto3 S3 client; boto3 reads the endpoint (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``) itself."""
    import boto3

    return boto3.client("s3")


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key`` (the key without leading or trailing slashes)."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


def fetch(uri: str, folder: Path, name: str) -> Path:
    """A local file with the contents of ``uri`` (S3 objects are downloaded into ``folder``)."""
    if not is_s3(uri):
        path = local_path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"{uri} does not exist or is not a file")
        return path
    parsed = urlparse(uri)
    target = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    s3_client().download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
    return target


def publish(source: Path, uri: str, relative: str) -> str:
    """Copy the file ``source`` to ``uri``/``relative``; returns where it went."""
    if is_s3(uri):
        parsed = urlparse(uri)
        key = "/".join(p for p in (parsed.path.strip("/"), relative) if p)
        s3_client().upload_file(str(source), parsed.netloc, key)
        return f"s3://{parsed.netloc}/{key}"
    target = local_path(uri) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return str(target)
