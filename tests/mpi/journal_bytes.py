# SPDX-License-Identifier: Apache-2.0
"""journal_bytes.py - the resume journal's bytes, read and rewritten with
Python's own hashlib from docs/FORMAT.md's description (not with Proteus's
code), and the real kill -9 of a run's processes; shared by the resume
tests of quantize and calibrate."""
import hashlib
import os
import signal
import struct
import subprocess


def read_journal(fn):
    """(header text, [(offset, type, id, payload, sum_ok)])."""
    with open(fn, "rb") as f:
        d = f.read()
    assert d[:8] == b"PQJOURNL", d[:8]
    version, n = struct.unpack_from("<II", d, 8)
    assert version in (1, 2)  # 2: quantize's, whose units name their codes in OUT.partial
    text = d[16:16 + n]
    assert hashlib.sha256(d[:16 + n]).digest() == d[16 + n:16 + n + 32]
    recs, pos = [], 16 + n + 32
    while pos + 64 <= len(d):
        magic, typ, rid, size, zero = struct.unpack_from("<IIqQQ", d, pos)
        assert magic == 0x524a5150 and zero == 0
        payload = d[pos + 32:pos + 32 + size]
        ok = hashlib.sha256(d[pos:pos + 32 + size]).digest() == d[pos + 32 + size:pos + 64 + size]
        recs.append((pos, typ, rid, payload, ok))
        pos += 64 + size
    return text.decode(), recs


def unit_codes(payload):
    """(offset in OUT.partial, bytes, checksum field) of a version-2 unit
    record's codes: after its i64 count of non-finite weights."""
    off, n = struct.unpack_from("<QQ", payload, 8)
    return off, n, payload[24:56]


def rewrite_header(fn, edit):
    """The journal with its header text changed by edit(text), its sum
    recomputed: a journal another run (version, configuration) wrote."""
    with open(fn, "rb") as f:
        d = f.read()
    n = struct.unpack_from("<I", d, 12)[0]
    text = edit(d[16:16 + n].decode()).encode()
    head = d[:12] + struct.pack("<I", len(text)) + text
    with open(fn, "wb") as f:
        f.write(head + hashlib.sha256(head).digest() + d[16 + n + 32:])


def session(pr):
    """The pids of the session of Popen pr (started with start_new_session)."""
    kids = subprocess.run(["pgrep", "-s", str(pr.pid)], capture_output=True, text=True).stdout.split()
    return [int(k) for k in kids]


def kill_all(pr):
    """SIGKILL every process of the run (ranks have their own groups), as a
    node failure would."""
    for pid in session(pr):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_rank(pr, rank):
    """SIGKILL MPI rank `rank` of the run only; False when none was found."""
    for pid in session(pr):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"OMPI_COMM_WORLD_RANK={rank}".encode() in f.read().split(b"\0"):
                    os.kill(pid, signal.SIGKILL)
                    return True
        except OSError:
            pass
    return False
