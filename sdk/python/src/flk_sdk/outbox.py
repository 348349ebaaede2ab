"""Durable outbox: records survive a crash between "computed" and "acknowledged by the gateway".

Layout: one JSON object per line, appended and fsynced before :meth:`Outbox.append` returns.

- ``{"op": "put", "seq": N, "body": "<exact JSON text>"}`` - a record to send;
- ``{"op": "ack", "seq": N}`` - the gateway decided it (any final answer, not only 200);
- ``{"op": "meta", "next_seq": N}`` - first line after compaction, so sequence numbers never repeat.

Bodies are kept as the exact text that will be POSTed: the signature covers values parsed from it,
and resending byte-identical JSON lets the server's dedup recognise a replay.

A crash can tear only the last line (appends are sequential). On open, a last line that does not parse
is dropped and truncated away, so the next append starts on a clean line; a bad line anywhere else
means real corruption and raises :class:`OutboxCorrupt` rather than silently losing records.
Compaction rewrites the pending records to a temp file, fsyncs it, renames it over the log and fsyncs
the directory, so after a crash either the old or the new file is complete.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from .pcs import PCS

try:  # POSIX advisory lock: two processes appending to one outbox would interleave sequences.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["Outbox", "OutboxCorrupt", "OutboxEntry"]


class OutboxCorrupt(RuntimeError):
    """A line other than the last one is unreadable: the file was damaged, not just torn."""


@dataclass(frozen=True)
class OutboxEntry:
    """An unacknowledged record."""

    seq: int
    """Outbox sequence number (monotonic, never reused)."""
    body: bytes
    """The exact JSON bytes to send."""

    def record(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body.decode("utf-8"))


def _fsync_dir(path: str) -> None:
    # The rename/creation is only durable once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """Append-only, crash-safe queue of records awaiting a final answer from the gateway.

    Args:
        path: the log file (created if missing; its directory must exist).
        fsync: set ``False`` only in tests that do not care about power loss.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        self._dir = os.path.dirname(os.path.abspath(self.path))
        self._fsync = fsync
        self._lock = threading.Lock()
        self._pending: Dict[int, bytes] = {}
        self._next_seq = 0
        self._acked_since_compaction = 0
        created = not os.path.exists(self.path)
        self._file = open(self.path, "a+b")
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self._file.close()
                raise RuntimeError(f"outbox {self.path} is in use by another process") from exc
        if created and self._fsync:
            _fsync_dir(self._dir)
        self._load()

    # ----------------------------------------------------------------------- recovery

    def _load(self) -> None:
        self._file.seek(0)
        data = self._file.read()
        lines = data.split(b"\n")
        # Everything before the last "\n" is complete lines; the remainder is empty or torn.
        complete, tail = lines[:-1], lines[-1]
        good_len = len(data) - len(tail)
        for index, line in enumerate(complete):
            entry = self._parse(line)
            if entry is None:
                if index == len(complete) - 1 and not tail:
                    # A last line whose newline made it but whose content did not: torn too.
                    good_len -= len(line) + 1
                    break
                raise OutboxCorrupt(f"{self.path}: unreadable line {index + 1}")
            self._apply(entry)
        if tail:
            entry = self._parse(tail)
            if entry is not None:
                # Complete record whose newline was lost: keep it and finish the line.
                self._apply(entry)
                self._file.seek(0, os.SEEK_END)
                self._file.write(b"\n")
                self._sync()
                return
        if good_len != len(data):
            self._file.truncate(good_len)
            self._sync()

    @staticmethod
    def _parse(line: bytes) -> Optional[Mapping[str, Any]]:
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("op") not in ("put", "ack", "meta"):
            return None
        return entry

    def _apply(self, entry: Mapping[str, Any]) -> None:
        op = entry["op"]
        if op == "meta":
            self._next_seq = max(self._next_seq, int(entry["next_seq"]))
        elif op == "put":
            seq = int(entry["seq"])
            self._pending[seq] = entry["body"].encode("utf-8")
            self._next_seq = max(self._next_seq, seq + 1)
        else:
            if self._pending.pop(int(entry["seq"]), None) is not None:
                self._acked_since_compaction += 1

    # ----------------------------------------------------------------------- writing

    def _sync(self) -> None:
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def _write(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        self._file.seek(0, os.SEEK_END)
        self._file.write(line)
        self._sync()

    def append(self, record: Union[PCS, Mapping[str, Any], bytes, str]) -> int:
        """Durably store a record; returns its sequence number once it is on disk."""
        if isinstance(record, PCS):
            body = record.to_json()
        elif isinstance(record, (bytes, bytearray)):
            body = bytes(record).decode("utf-8")
        elif isinstance(record, str):
            body = record
        else:
            body = json.dumps(dict(record), separators=(",", ":"), allow_nan=False)
        with self._lock:
            seq = self._next_seq
            self._write({"op": "put", "seq": seq, "body": body})
            self._next_seq = seq + 1
            self._pending[seq] = body.encode("utf-8")
            return seq

    def ack(self, seq: int) -> None:
        """Mark a record as finally answered. Acking twice (or after compaction) is harmless."""
        with self._lock:
            if seq >= self._next_seq or seq < 0:
                raise KeyError(f"unknown outbox sequence {seq}")
            if seq not in self._pending:
                return
            self._write({"op": "ack", "seq": seq})
            del self._pending[seq]
            self._acked_since_compaction += 1

    def pending(self) -> List[OutboxEntry]:
        """Unacknowledged records in sequence order (what to resend after a restart)."""
        with self._lock:
            return [OutboxEntry(seq, self._pending[seq]) for seq in sorted(self._pending)]

    @property
    def acked_since_compaction(self) -> int:
        """How many acks a :meth:`compact` would drop (a hint for when to compact)."""
        return self._acked_since_compaction

    def compact(self) -> None:
        """Atomically rewrite the log with only the pending records."""
        with self._lock:
            tmp = self.path + ".compact.tmp"
            with open(tmp, "wb") as out:
                lines = [{"op": "meta", "next_seq": self._next_seq}]
                lines += [{"op": "put", "seq": s, "body": self._pending[s].decode("utf-8")}
                          for s in sorted(self._pending)]
                for entry in lines:
                    out.write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
                              .encode("utf-8") + b"\n")
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            # Take the lock on the new file before it becomes visible under our name.
            new_file = open(tmp, "a+b")
            if fcntl is not None:
                fcntl.flock(new_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, self.path)
            if self._fsync:
                _fsync_dir(self._dir)
            self._file.close()
            self._file = new_file
            self._acked_since_compaction = 0

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
