"""Write a dataset duplicated K times (the guide's "effective epochs" for small datasets).

The input is never modified. The output is written to a temporary file beside it and
renamed into place only when complete, so a crash or a full disk never leaves a partial
file under the requested name.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunesmith.datasets.validate import DatasetKind, ValidationReport, validate_dataset
from tunesmith.errors import TunesmithError

MAX_FACTOR = 100


class DuplicationError(TunesmithError):
    """A request that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class DuplicationResult:
    source: Path
    output: Path
    factor: int
    records_in: int
    records_out: int
    report: ValidationReport


def duplicate_dataset(
    source: str | Path,
    output: str | Path,
    factor: int,
    *,
    force: bool = False,
    kind: DatasetKind | str = DatasetKind.FINE_TUNING,
) -> DuplicationResult:
    """Validate ``source``, then write its records ``factor`` times, one whole copy after another.

    Raises :class:`DuplicationError` for a bad factor, an existing output without ``force``,
    an output that is the input, invalid data, or an unwritable destination.
    """
    source, output = Path(source), Path(output)
    if not 1 <= factor <= MAX_FACTOR:
        raise DuplicationError(f"--factor {factor} is out of range: must be between 1 and {MAX_FACTOR}")
    if output.exists():
        if source.exists() and output.resolve() == source.resolve():
            raise DuplicationError(f"{output} is the input file: choose another output")
        if not force:
            raise DuplicationError(f"{output} already exists: choose another name or pass --force to overwrite it")
        if output.is_dir():
            raise DuplicationError(f"{output} is a directory")
    report = validate_dataset(source, kind=kind)
    if not report.valid:
        raise DuplicationError(f"{source} has {report.log.error_count} error(s); run `tunesmith validate {source}` to see them")
    wanted = set(report.training.lines)  # line numbers of the valid records
    directory = output.parent if str(output.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=directory)
    except OSError as exc:
        raise DuplicationError(f"cannot write in {directory}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            for _ in range(factor):
                _copy_records(source, wanted, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, output)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise DuplicationError(f"cannot write {output}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return DuplicationResult(source, output, factor, len(wanted), len(wanted) * factor, report)


def _copy_records(source: Path, wanted: set[int], out) -> None:
    """Copy the wanted lines byte for byte, normalising the line ending and dropping a BOM."""
    with source.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number in wanted:
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                out.write(raw.rstrip(b"\r\n") + b"\n")
