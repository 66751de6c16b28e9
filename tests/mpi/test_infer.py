# SPDX-License-Identifier: Apache-2.0
"""test_infer.py - `proteus embed` and `proteus score` on N MPI ranks: the
output files are the same bytes for the singleton, 2 and 3 ranks, 2 threads
and another batch size, and a gzipped input; ids and lengths follow the FASTA as Python reads it;
progress events reach `proteus monitor`; a run killed with SIGKILL (with a torn record appended to its journal,
or killed halfway through writing one) continues with --resume without rerunning the chunks it wrote,
and gives the same bytes; SIGUSR1 and SIGTERM stop a run with status 14 and
its journal, which --resume on another rank count finishes to the same bytes
(score without --out or --json leaves no journal);
a resume with other options or of another FASTA (naming the line that
differs), a rerun without --resume over a journal, a second writer of the
same --out, an over-long record under --long error and --contacts on a
checkpoint without the contact head are refused with one clear message.

usage: test_infer.py PROTEUS MPIEXEC MODEL.safetensors FASTA"""
import fcntl
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from journal_bytes import kill_all, session  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import expect, finish, path, scratch  # noqa: E402

import h5py

PROTEUS, MPIEXEC, MODEL, FASTA = (os.path.abspath(a) for a in sys.argv[1:5])
TMP = scratch("pq_infer_")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
MAXLEN = 120
def fasta_records(src, n):
    """The first n records as (id, sequence), read independently of Proteus."""
    out, cur_id, cur = [], None, []
    for line in open(src):
        line = line.strip()
        if line.startswith(">"):
            if cur_id is not None:
                out.append((cur_id, "".join(cur)))
            if len(out) == n:
                return out
            cur_id, cur = line[1:].split()[0], []
        elif line:
            cur.append(line)
    if cur_id is not None and len(out) < n:
        out.append((cur_id, "".join(cur)))
    return out


def run(n, *args, check=True, timeout=600, env=None):
    cmd = [PROTEUS, *args, "--quiet"]
    if n:
        cmd = [MPIEXEC, "-n", str(n), "--oversubscribe"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def holds_a_chunk(journal):
    """True once the journal (docs/FORMAT.md: 16 bytes, the header text, its
    SHA-256) holds more than its header."""
    try:
        with open(journal, "rb") as f:
            head = f.read(16)
        return len(head) == 16 and os.path.getsize(journal) > 16 + struct.unpack("<I", head[12:16])[0] + 32
    except OSError:
        return False


def same_bytes(a, b):
    return open(a, "rb").read() == open(b, "rb").read()


RECS = fasta_records(FASTA, 30)
SMALL = path("small.fasta")
with open(SMALL, "w") as f:
    for rid, seq in RECS:
        f.write(f">{rid} test\n{seq}\n")
EMB = ["--model", MODEL, "--fasta", SMALL, "--max-length", str(MAXLEN), "--layers", "0,-1",
       "--include", "mean,per_tok,bos", "--chunk-residues", "400"]

try:
    # embed: one file, the same bytes for every layout
    ref = path("e_ref.h5")
    run(0, "embed", *EMB, "--out", ref, "--threads", "1")
    with h5py.File(ref, "r") as h:
        ids = [x.decode() if isinstance(x, bytes) else x for x in h["ids"][()]]
        expect(ids == [r for r, _ in RECS], "embed /ids are not the FASTA's ids in input order")
        expect(list(h["lengths"][()]) == [min(len(s), MAXLEN) for _, s in RECS],
               "embed /lengths are not the cropped lengths")
        expect(h["layer_6/tokens"].shape[0] == sum(min(len(s), MAXLEN) for _, s in RECS),
               "embed per-token rows")
    for n, extra, name in ((2, ["--threads", "1"], "2 ranks"), (3, ["--threads", "1"], "3 ranks"),
                           (0, ["--threads", "2", "--batch-tokens", "150"], "2 threads, other batches")):
        out = path(f"e_{n}.h5")
        run(n, "embed", *EMB, "--out", out, *extra)
        expect(same_bytes(ref, out), f"embed on {name} differs from the singleton")
        expect(not os.path.exists(out + ".journal"), f"embed on {name} left its journal")
    # the same records gzipped, on 2 ranks
    with open(SMALL, "rb") as f, gzip.open(SMALL + ".gz", "wb") as g:
        g.write(f.read())
    gz = ["--fasta" if a == "--fasta" else SMALL + ".gz" if a == SMALL else a for a in EMB]
    run(2, "embed", *gz, "--out", path("e_gz.h5"), "--threads", "1")
    expect(same_bytes(ref, path("e_gz.h5")), "embed of the gzipped FASTA on 2 ranks differs")

    # score: tallies as HDF5, the same bytes on 1, 2, 3 ranks
    SC = ["--model", MODEL, "--fasta", SMALL, "--max-length", str(MAXLEN), "--chunk-residues", "400"]
    run(0, "score", *SC, "--out", path("s_ref.h5"), "--json", path("s_ref.json"), "--threads", "1")
    js = json.load(open(path("s_ref.json")))
    with h5py.File(path("s_ref.h5"), "r") as h:
        expect(int(h["n_masked"][()].sum()) == js["n_masked"], "score HDF5 and JSON totals disagree")
        expect(len(h["ids"]) == len(RECS), "score sequence count")
    for n in (2, 3):
        run(n, "score", *SC, "--out", path(f"s_{n}.h5"), "--threads", "1")
        expect(same_bytes(path("s_ref.h5"), path(f"s_{n}.h5")), f"score on {n} ranks differs from the singleton")

    # resume after kill -9 of the whole job, a torn record at the journal's end
    out = path("e_kill.h5")
    jr = out + ".journal"
    cmd = [MPIEXEC, "-n", "2", "--oversubscribe", PROTEUS, "embed", *EMB, "--out", out, "--threads", "1",
           "--chunk-residues", "200", "--quiet"]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if os.path.exists(jr) and os.path.getsize(jr) > 200000:  # a few chunks of 2 x 320 floats a row
            break
        time.sleep(0.05)
    killed = p.poll() is None
    if killed:  # every process of the session: the ranks run in process groups of their own
        kill_all(p)
    p.wait()
    t0 = time.time()  # until no rank of it holds the journal's lock any more
    while session(p) and time.time() - t0 < 30:
        kill_all(p)
        time.sleep(0.05)
    expect(killed, "the run to kill finished before it could be killed")
    with open(jr, "ab") as f:
        f.write(b"PQJR" + struct.pack("<IqQQ", 3, 99, 1 << 20, 0) + b"torn")  # a head promising 1 MiB
    r = run(2, "embed", *EMB, "--out", out, "--threads", "1", "--chunk-residues", "200", "--resume")
    resumed = int(r.stdout.split(" chunk(s) resumed")[0].rsplit(", ", 1)[1])
    expect(resumed >= 1, f"--resume reran everything: {r.stdout}")
    full = path("e_full.h5")
    run(0, "embed", *EMB, "--out", full, "--threads", "1", "--chunk-residues", "200")
    expect(same_bytes(full, out), "the resumed file differs from an uninterrupted run")
    expect(not os.path.exists(jr), "the journal is left after the resumed run")

    # progress events on a ZeroMQ endpoint, one per chunk, read by `proteus monitor`
    ep = "ipc://" + path("mon.sock")
    mon = subprocess.Popen([PROTEUS, "monitor", ep, "--json", "--timeout", "120"], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    run(2, "embed", *EMB, "--out", path("e_mon.h5"), "--threads", "1", "--monitor", ep)
    events = [json.loads(line) for line in mon.communicate(timeout=150)[0].splitlines() if line.startswith("{")]
    units = [e for e in events if e["kind"] == "unit"]
    # (a subscriber may miss the first events while it connects)
    expect(units and units[-1]["units_done"] == units[-1]["units_total"] > 1
           and {e["rank"] for e in units} == {0, 1} and events[-1]["kind"] == "finished",
           f"monitor events: {events[-3:]}")

    # a resume with other options, or of another FASTA, is refused naming the line that differs
    p = subprocess.Popen([PROTEUS, "embed", *EMB, "--out", path("e_fp.h5"), "--chunk-residues", "200", "--quiet"],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while p.poll() is None and not (os.path.exists(path("e_fp.h5.journal")) and
                                    os.path.getsize(path("e_fp.h5.journal")) > 100000):
        time.sleep(0.05)
    p.kill()
    p.wait()
    r = run(0, "embed", *EMB, "--out", path("e_fp.h5"), "--layers", "0", "--chunk-residues", "200", "--resume",
            check=False)
    expect(r.returncode == 2 and "cannot be resumed: layers: this run has 0, the journal 0,6" in r.stderr,
           f"a resume with other layers: {r.returncode} {r.stderr}")
    other = path("other.fasta")
    with open(other, "w") as f:
        for rid, seq in RECS[:-1]:
            f.write(f">{rid}\n{seq}\n")
    oth = ["--fasta" if a == "--fasta" else other if a == SMALL else a for a in EMB]
    r = run(0, "embed", *oth, "--out", path("e_fp.h5"), "--chunk-residues", "200", "--resume", check=False)
    expect(r.returncode == 2 and f"cannot be resumed: fasta: this run has {other}" in r.stderr,
           f"a resume with another FASTA: {r.returncode} {r.stderr}")
    r = run(0, "embed", *EMB, "--out", path("e_fp.h5"), "--chunk-residues", "200", check=False)
    expect(r.returncode == 2 and "pass --resume" in r.stderr and os.path.exists(path("e_fp.h5.journal")),
           f"a rerun without --resume over a journal: {r.returncode} {r.stderr}")

    # a second writer of the same --out (the lock held here, as a running proteus holds it)
    with open(path("e_fp.h5.journal"), "r+b") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = run(2, "embed", *EMB, "--out", path("e_fp.h5"), "--chunk-residues", "200", "--resume", check=False)
        expect(r.returncode == 3 and "e_fp.h5.journal is locked: another proteus run is writing the same --out"
               in r.stderr, f"a second writer: {r.returncode} {r.stderr}")
    r = run(0, "embed", *EMB, "--out", path("e_fp.h5"), "--chunk-residues", "200", "--resume")
    expect(same_bytes(full, path("e_fp.h5")), "the resume after the refusals differs")

    # killed halfway through the record of chunk 3: a torn last record, cut on --resume
    out = path("e_torn.h5")
    r = run(0, "embed", *EMB, "--out", out, "--chunk-residues", "200", check=False,
            env=dict(ENV, PQ_TEST_KILL_JOURNAL="3"))
    expect(r.returncode == -signal.SIGKILL and os.path.exists(out + ".journal"), f"kill in a record: {r.returncode}")
    r = run(3, "embed", *EMB, "--out", out, "--threads", "1", "--chunk-residues", "200", "--resume")
    expect(", 3 chunk(s) resumed" in r.stdout and same_bytes(full, out),
           f"the resume after a torn record: {r.stdout}")

    # SIGUSR1 (through mpirun) and SIGTERM stop with status 14 and the journal; --resume on another rank
    # count finishes it
    for sig, n, n_resume in ((signal.SIGUSR1, 2, 3), (signal.SIGTERM, 0, 2)):
        out = path(f"e_sig{int(sig)}.h5")
        cmd = [PROTEUS, "embed", *EMB, "--out", out, "--threads", "1", "--chunk-residues", "200", "--quiet"]
        if n:
            cmd = [MPIEXEC, "-n", str(n), "--oversubscribe"] + cmd
        p = subprocess.Popen(cmd, env=dict(ENV, PQ_TEST_SLOW_RANK="0,1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        while p.poll() is None and not holds_a_chunk(out + ".journal"):
            time.sleep(0.02)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        expect(p.returncode == 14 and "interrupted: stopped by SIG" in err and "--resume" in err
               and os.path.exists(out + ".journal") and not os.path.exists(out),
               f"{sig.name} on {n or 1} rank(s): {p.returncode} {err}")
        r = run(n_resume, "embed", *EMB, "--out", out, "--threads", "1", "--chunk-residues", "200", "--resume")
        expect(" 0 chunk(s) resumed" not in r.stdout and same_bytes(full, out),
               f"the resume after {sig.name}: {r.stdout}")

    # score: a stop, then --resume, gives the uninterrupted tallies
    out = path("s_sig.h5")
    p = subprocess.Popen([PROTEUS, "score", *SC, "--out", out, "--threads", "1", "--chunk-residues", "200", "--quiet"],
                         env=dict(ENV, PQ_TEST_SLOW_RANK="0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while p.poll() is None and not holds_a_chunk(out + ".journal"):
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    expect(p.returncode == 14, f"score after SIGTERM: {p.returncode}")
    run(2, "score", *SC, "--out", out, "--threads", "1", "--chunk-residues", "200", "--resume")
    run(0, "score", *SC, "--out", path("s_full.h5"), "--threads", "1", "--chunk-residues", "200")
    expect(same_bytes(path("s_full.h5"), out), "the resumed score differs from an uninterrupted run")
    # score without --out or --json: its journal in $TMPDIR goes, even after a stop
    tmpdir = path("tmpdir")
    os.makedirs(tmpdir)
    p = subprocess.Popen([PROTEUS, "score", *SC, "--threads", "1", "--chunk-residues", "200", "--quiet"],
                         env=dict(ENV, TMPDIR=tmpdir, PQ_TEST_SLOW_RANK="0"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    while p.poll() is None and not any(holds_a_chunk(os.path.join(tmpdir, f)) for f in os.listdir(tmpdir)):
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    expect(p.returncode == 14 and os.listdir(tmpdir) == [],
           f"score without --out after SIGTERM: {p.returncode}, left {os.listdir(tmpdir)}")

    # --long error names the over-long record
    long_id = next(rid for rid, s in RECS if len(s) > MAXLEN)
    r = run(0, "embed", *EMB, "--out", path("e_long.h5"), "--long", "error", check=False)
    expect(r.returncode != 0 and long_id in r.stderr and not os.path.exists(path("e_long.h5")),
           f"--long error: {r.returncode} {r.stderr}")

    # --contacts on a checkpoint without the contact head
    raw = open(MODEL, "rb").read()
    (hl,) = struct.unpack("<Q", raw[:8])
    head, body, data = json.loads(raw[8:8 + hl]), {}, b""
    for k, v in head.items():
        if k == "__metadata__" or k.startswith("esm.contact_head"):
            continue
        a, b = v["data_offsets"]
        body[k] = dict(v, data_offsets=[len(data), len(data) + b - a])
        data += raw[8 + hl + a:8 + hl + b]
    hb = json.dumps(body).encode()
    hb += b" " * (-len(hb) % 8)
    nohead = path("nohead.safetensors")
    open(nohead, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
    r = run(2, "embed", "--model", nohead, "--fasta", SMALL, "--out", path("e_c.h5"), "--contacts", check=False)
    expect(r.returncode != 0 and "contact-head" in r.stderr and r.stderr.count("contact-head") == 1,
           f"--contacts without the head: {r.returncode} {r.stderr}")
finally:
    shutil.rmtree(TMP, True)

finish()
