"""Durable outbox: fsynced appends, acks, recovery after a crash, atomic compaction."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import pytest

from flk_sdk.outbox import Outbox, OutboxCorrupt


def bodies(box: Outbox) -> list:
    return [(e.seq, e.record()) for e in box.pending()]


def test_append_ack_pending_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    with Outbox(path) as box:
        a = box.append({"pcs_id": "a"})
        b = box.append(b'{"pcs_id":"b","D_hat":1.50}')
        c = box.append('{"pcs_id":"c"}')
        assert (a, b, c) == (0, 1, 2)
        box.ack(b)
        box.ack(b)  # harmless twice
        assert [s for s, _ in bodies(box)] == [0, 2]
    with Outbox(path) as box:  # "restart"
        assert bodies(box) == [(0, {"pcs_id": "a"}), (2, {"pcs_id": "c"})]
        assert box.append({"pcs_id": "d"}) == 3
        with pytest.raises(KeyError):
            box.ack(99)


def test_bodies_are_kept_byte_exact(tmp_path: Path) -> None:
    raw = '{"pcs_id":"x","D_hat":1.50,"s":"\u00e9\U0001F600"}'
    with Outbox(tmp_path / "o") as box:
        box.append(raw)
    with Outbox(tmp_path / "o") as box:
        assert box.pending()[0].body == raw.encode("utf-8")


def test_every_append_and_ack_is_fsynced(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o") as box:
        with mock.patch("flk_sdk.outbox.os.fsync") as fsync:
            box.append({"x": 1})
            assert fsync.call_count == 1
            box.ack(0)
            assert fsync.call_count == 2


@pytest.mark.parametrize("torn", [b'{"op":"put","seq":2,"bo', b'{"op":"put","seq":2,"body":"{}"',
                                  b"\x00\x00\x00", b'{"op":"a'])
def test_torn_last_line_is_ignored_and_truncated(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
        box.append({"n": 1})
        box.ack(0)
    good = path.read_bytes()
    with open(path, "ab") as f:  # simulated crash in the middle of writing the next line
        f.write(torn)
    with Outbox(path) as box:
        assert bodies(box) == [(1, {"n": 1})]
        assert path.read_bytes() == good  # torn bytes removed, so the next append is clean
        assert box.append({"n": 2}) == 2
    with Outbox(path) as box:
        assert bodies(box) == [(1, {"n": 1}), (2, {"n": 2})]


def test_torn_line_with_newline_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
    with open(path, "ab") as f:
        f.write(b'{"op":"put","se\n')
    with Outbox(path) as box:
        assert bodies(box) == [(0, {"n": 0})]


def test_complete_last_line_missing_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
    with open(path, "ab") as f:
        f.write(b'{"op":"put","seq":1,"body":"{\\"n\\":1}"}')
    with Outbox(path) as box:
        assert bodies(box) == [(0, {"n": 0}), (1, {"n": 1})]
        box.append({"n": 2})
    with Outbox(path) as box:
        assert [s for s, _ in bodies(box)] == [0, 1, 2]


def test_corruption_in_the_middle_raises(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
        box.append({"n": 1})
    lines = path.read_bytes().split(b"\n")
    lines[0] = b"garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(OutboxCorrupt):
        Outbox(path)


def test_compaction_drops_acked_and_keeps_sequence(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        for n in range(5):
            box.append({"n": n})
        for seq in (0, 1, 3):
            box.ack(seq)
        assert box.acked_since_compaction == 3
        size_before = path.stat().st_size
        box.compact()
        assert box.acked_since_compaction == 0
        assert path.stat().st_size < size_before
        assert not (tmp_path / "o.compact.tmp").exists()
        assert bodies(box) == [(2, {"n": 2}), (4, {"n": 4})]
        assert box.append({"n": 5}) == 5  # appends go to the new file
        box.ack(2)
    with Outbox(path) as box:
        assert bodies(box) == [(4, {"n": 4}), (5, {"n": 5})]


def test_compaction_of_everything_never_reuses_sequences(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
        box.ack(0)
        box.compact()
    with Outbox(path) as box:
        assert box.pending() == []
        assert box.append({"n": 1}) == 1


def test_crash_during_compaction_leaves_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
        box.append({"n": 1})
        box.ack(0)
        with mock.patch("flk_sdk.outbox.os.replace", side_effect=OSError("power cut")):
            with pytest.raises(OSError):
                box.compact()
    with Outbox(path) as box:  # the leftover temp file is ignored; the log is whole
        assert bodies(box) == [(1, {"n": 1})]


def test_compaction_fsyncs_file_and_directory(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o") as box:
        box.append({"n": 0})
        with mock.patch("flk_sdk.outbox.os.fsync") as fsync:
            box.compact()
        assert fsync.call_count >= 2  # the temp file, then the directory


def test_second_process_is_locked_out(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("advisory locks are POSIX")
    import subprocess
    import sys
    path = tmp_path / "o"
    with Outbox(path):
        code = ("import sys; from flk_sdk.outbox import Outbox\n"
                "try:\n    Outbox(sys.argv[1])\nexcept RuntimeError:\n    sys.exit(3)\n")
        result = subprocess.run([sys.executable, "-c", code, str(path)])
        assert result.returncode == 3


def test_file_format_is_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "o"
    with Outbox(path) as box:
        box.append({"n": 0})
        box.ack(0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"op": "put", "seq": 0, "body": '{"n":0}'}, {"op": "ack", "seq": 0}]
