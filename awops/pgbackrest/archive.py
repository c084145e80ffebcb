"""WAL segment names, and the walk that finds segments missing from a pgBackRest archive.

pgBackRest stores segment ``TTTTTTTTLLLLLLLLSSSSSSSS`` (timeline, log, segment) as
``<archive id>/TTTTTTTTLLLLLLLL/<name>-<sha1>[.<compression>]``. A restore of a backup needs
every segment from its start onward, so a hole after the newest backup's start means point-in
-time recovery past the hole is impossible, and a hole before its stop means the backup does
not restore at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from awops.pgbackrest.info import Backup

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
# initdb --wal-segsize takes powers of two from 1 MiB to 1 GiB.
_SEGMENT_SIZES = tuple(2**power for power in range(20, 31))
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_SEGMENT_FILE = re.compile(r"^([0-9A-F]{24})(?:\.partial)?-[0-9a-f]{40}(?:\.[a-z0-9]+)?$")
_LOG_DIRECTORY = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})$")
MAX_RANGES_REPORTED = 10

# ``list_path(path)`` -> {name: repo-ls entry}, the path relative to the stanza's archive.
ListPath = Callable[[str], dict[str, dict[str, Any]]]


@dataclass(frozen=True, order=True)
class Segment:
    timeline: int
    log: int
    seg: int

    @classmethod
    def parse(cls, name: str) -> Segment:
        match = _SEGMENT.match(name)
        if match is None:
            raise ValueError(f"{name!r} is not a WAL segment name")
        return cls(int(match[1], 16), int(match[2], 16), int(match[3], 16))

    def number(self, segment_bytes: int) -> int:
        """The segment's position in the WAL stream, whatever its timeline."""
        return self.log * (2**32 // segment_bytes) + self.seg

    @classmethod
    def from_number(cls, timeline: int, number: int, segment_bytes: int) -> Segment:
        log, seg = divmod(number, 2**32 // segment_bytes)
        return cls(timeline, log, seg)

    @property
    def name(self) -> str:
        return f"{self.timeline:08X}{self.log:08X}{self.seg:08X}"


def lsn_bytes(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def segment_bytes(backups: Iterable[Backup]) -> int:
    """The WAL segment size the backups' LSNs and segment names agree on; 16 MiB when they
    agree on it or do not tell (pgBackRest's JSON does not state the size)."""
    pairs = []
    for backup in backups:
        for lsn, name in (
            (backup.lsn_start, backup.archive_start),
            (backup.lsn_stop, backup.archive_stop),
        ):
            if lsn and name and _SEGMENT.match(name):
                pairs.append((lsn_bytes(lsn), Segment.parse(name)))
    fitting = [
        size
        for size in _SEGMENT_SIZES
        # pg_walfile_name() names the segment holding the byte before the LSN.
        if all(seg.number(size) in (pos // size, max(pos - 1, 0) // size) for pos, seg in pairs)
    ]
    if not fitting or DEFAULT_SEGMENT_BYTES in fitting:
        return DEFAULT_SEGMENT_BYTES
    return int(fitting[0])


@dataclass
class ArchiveWalk:
    """Which segments from ``first`` to ``last`` the archive holds."""

    first: str
    last: str
    segments_checked: int = 0
    missing_segments: int = 0
    missing_ranges: list[str] = field(default_factory=list)
    newest_segment_timestamp: float | None = None  # when the newest segment was stored

    @property
    def has_gap(self) -> bool:
        return self.missing_segments > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.first,
            "to": self.last,
            "segments_checked": self.segments_checked,
            "missing_segments": self.missing_segments,
            "missing_ranges": self.missing_ranges,
        }


def walk_archive(
    list_path: ListPath,
    archive_id: str,
    first: Segment,
    last: Segment,
    segment_size: int,
) -> ArchiveWalk:
    """Every segment number from ``first`` to ``last`` must be in the archive on a timeline
    between theirs (after a promotion the new timeline carries on from the old one)."""
    timelines = range(first.timeline, max(first.timeline, last.timeline) + 1)
    walk = ArchiveWalk(first.name, last.name)
    present: set[int] = set()
    root = list_path(archive_id)
    for directory in sorted(root):
        match = _LOG_DIRECTORY.match(directory)
        if match is None or root[directory].get("type") != "path":
            continue
        timeline, log = int(match[1], 16), int(match[2], 16)
        if timeline not in timelines or not first.log <= log <= last.log:
            continue
        for name, entry in list_path(f"{archive_id}/{directory}").items():
            file_match = _SEGMENT_FILE.match(name)
            if file_match is None:
                continue
            present.add(Segment.parse(file_match[1]).number(segment_size))
            stored = entry.get("time")
            if isinstance(stored, int | float) and (
                walk.newest_segment_timestamp is None or stored > walk.newest_segment_timestamp
            ):
                walk.newest_segment_timestamp = float(stored)
    start, end = first.number(segment_size), last.number(segment_size)
    walk.segments_checked = max(0, end - start + 1)
    gap_start: int | None = None
    for number in range(start, end + 2):
        missing = number <= end and number not in present
        if missing and gap_start is None:
            gap_start = number
        elif not missing and gap_start is not None:
            walk.missing_segments += number - gap_start
            if len(walk.missing_ranges) < MAX_RANGES_REPORTED:
                walk.missing_ranges.append(
                    _range_text(first.timeline, gap_start, number - 1, segment_size)
                )
            gap_start = None
    return walk


def _range_text(timeline: int, first: int, last: int, segment_size: int) -> str:
    start = Segment.from_number(timeline, first, segment_size).name
    if first == last:
        return start
    return f"{start}..{Segment.from_number(timeline, last, segment_size).name}"
