"""The devices to make: names, uuids and hardware ids checked, and device specs from a
count (`--count`) or streamed from a CSV file (`--from-csv`).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from otactl.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
HARDWARE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- names, uuids, hardware ids ----------------------------------------------------------


def validate_name(name: str) -> str:
    """A device name: letters, digits, `.`, `_`, `-`, at most 64, no `..`."""
    if not NAME_RE.fullmatch(name) or ".." in name or set(name) == {"."}:
        raise ConfigError(
            f"device name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (no '..')"
        )
    return name


def validate_uuid(text: str) -> str:
    """A device uuid in canonical form; returned lowercase (it becomes the certificate CN)."""
    value = text.strip().lower()
    if not UUID_RE.fullmatch(value):
        raise ConfigError(f"uuid {text!r}: expected the form 123e4567-e89b-42d3-a456-426614174000")
    return value


def validate_hardware_id(text: str) -> str:
    """A primary ECU hardware id (it goes into sota.toml unescaped)."""
    if not HARDWARE_ID_RE.fullmatch(text):
        raise ConfigError(f"hardware id {text!r}: use 1-200 letters, digits, '.', '_' or '-'")
    return text


@dataclass(frozen=True)
class DeviceSpec:
    """One device to make; `row` is the CSV line it came from (for error messages)."""

    name: str
    uuid: str | None = None
    hardware_id: str | None = None
    row: int | None = None


# --- device lists ------------------------------------------------------------------------


def specs_from_count(prefix: str, count: int, start: int = 1) -> Iterator[DeviceSpec]:
    """`<prefix>-0001`, `<prefix>-0002`, ... : names that stay the same when a run is
    repeated, so a re-run skips what it made."""
    if count < 1 or start < 0:
        raise ConfigError("--count must be at least 1 and --start at least 0")
    validate_name(f"{prefix}-{start + count - 1:04d}")
    for i in range(start, start + count):
        yield DeviceSpec(f"{prefix}-{i:04d}")


def _utf8_lines(path: Path, f: BinaryIO) -> Iterator[str]:
    """The lines of a binary file as text, each decoded on its own, so that a byte that is
    not UTF-8 is reported at its offset in the file (a text-mode file only knows the
    offset in its read buffer). A leading byte order mark (Excel's "CSV UTF-8") is dropped.
    Splitting at CR and LF is safe: those bytes never occur inside a UTF-8 sequence."""
    offset = 0
    n = 0
    for chunk in f:
        # A bare CR ends a line too (as in a text file opened with newline="").
        for raw in chunk.splitlines(keepends=True):
            n += 1
            data = raw[3:] if offset == 0 and raw.startswith(codecs.BOM_UTF8) else raw
            skipped = len(raw) - len(data)
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(
                    f"{path}: not UTF-8 text: byte 0x{data[e.start]:02x} at offset "
                    f"{offset + skipped + e.start} (line {n}); save it as UTF-8"
                ) from None
            offset += len(raw)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank CSV row; a file that cannot be read,
    is not UTF-8 or is not CSV raises one line naming it."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    with f:
        # strict: a stray or unterminated quote is refused, not folded into a name.
        reader = csv.reader(_utf8_lines(path, f), strict=True)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise ConfigError(f"{path}:{max(reader.line_num, 1)}: not CSV: {e}") from None
            except OSError as e:
                raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
            cells = [c.strip() for c in row]
            if any(cells):
                yield reader.line_num, cells


def count_csv_rows(path: Path) -> int:
    """Data rows of a device CSV (for a progress total); the rows are not validated, but a
    file that is not UTF-8 CSV is refused here, before any bundle is made."""
    return sum(1 for _ in _csv_rows(path))


def specs_from_csv(path: Path) -> Iterator[DeviceSpec]:
    """Devices from a CSV file, streamed: `name[,uuid][,hardware_id]`, an optional header
    row starting with `name`, blank lines ignored. A bad row raises with its line number
    when the run reaches it."""
    seen_names: dict[str, int] = {}
    seen_uuids: dict[str, int] = {}
    first = True
    for line, cells in _csv_rows(path):
        if first and cells[0].lower() == "name":
            first = False
            continue
        first = False
        try:
            spec = _spec_from_cells(cells, line)
        except ConfigError as e:
            raise ConfigError(f"{path}:{line}: {e}") from None
        if spec.name in seen_names:
            raise ConfigError(
                f"{path}:{line}: name {spec.name!r} repeats line {seen_names[spec.name]}"
            )
        seen_names[spec.name] = line
        if spec.uuid:
            if spec.uuid in seen_uuids:
                raise ConfigError(
                    f"{path}:{line}: uuid {spec.uuid} repeats line {seen_uuids[spec.uuid]}"
                )
            seen_uuids[spec.uuid] = line
        yield spec


def _spec_from_cells(cells: list[str], line: int) -> DeviceSpec:
    if len(cells) > 3:
        raise ConfigError(f"{len(cells)} columns; expected name[,uuid][,hardware_id]")
    name = validate_name(cells[0])
    dev_uuid = validate_uuid(cells[1]) if len(cells) > 1 and cells[1] else None
    hw = validate_hardware_id(cells[2]) if len(cells) > 2 and cells[2] else None
    return DeviceSpec(name, dev_uuid, hw, row=line)
