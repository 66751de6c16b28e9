# SPDX-License-Identifier: Apache-2.0
"""test_resume.py - `proteus quantize --resume` after a stop at many points:
fault switches that SIGKILL rank 0 (before the plan, once the journal is
made, after the float tensors, after n units, halfway through a journal
record, before and after the commit's rename), a real kill -9 of one rank
and of every rank, SIGUSR1 and SIGTERM; then --resume on the same or the
other rank count must give the bytes of an uninterrupted run (the same
command run to the end in another folder: `cmp`). Also: a journal of
another configuration, model or version refused naming the difference; an
existing journal refused without --resume; a damaged record redone; a
checkpoint changed under the journal refused; two runs on one --out (the
lock).

The journal's bytes are read and rewritten here with Python's own hashlib
from docs/FORMAT.md's description, not with Proteus's code.

usage: test_resume.py PROTEUS MPIEXEC [unittest args]"""
import atexit
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import hashlib
import struct

from journal_bytes import kill_all, kill_rank, read_journal, rewrite_header, session, unit_codes

PROTEUS = os.path.abspath(sys.argv.pop(1))
MPIEXEC = sys.argv.pop(1)
TMP = tempfile.mkdtemp(prefix="pq_resume_")
atexit.register(shutil.rmtree, TMP, True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
# 486 units of 64k on t6; the digest in 1 MB chunks so that workers hash too
ARGS = ["--per-channel", "--unit-bytes", "64k", "--threads", "1", "-q"]
CHUNKS = {"PQ_TEST_HASH_CHUNK_BYTES": "1000000"}
INTERRUPTED = 14
MODEL = os.path.join(TMP, "t6.safetensors")


def setUpModule():
    subprocess.run([PROTEUS, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "1", "--out", MODEL],
                   check=True, capture_output=True)


def cmd(n, out, extra=(), model="../t6.safetensors"):
    c = [PROTEUS, "quantize", "--model", model, "--out", out, *ARGS, *extra]
    return [MPIEXEC, "-n", str(n), "--oversubscribe"] + c if n else c


def run(n, folder, extra=(), env=None, timeout=120, model="../t6.safetensors"):
    """The command in folder TMP/folder (made), --out x.h5: every run's
    recorded command line is the same, so whole files compare."""
    d = os.path.join(TMP, folder)
    os.makedirs(d, exist_ok=True)
    return subprocess.run(cmd(n, "x.h5", extra, model), cwd=d, capture_output=True, text=True,
                          env=dict(ENV, **CHUNKS, **(env or {})), timeout=timeout)


def out_of(folder, name="x.h5"):
    return os.path.join(TMP, folder, name)


def xxh3_128(b):
    """XXH3-128 of b by the xxhsum tool, canonical bytes."""
    p = subprocess.run(["xxhsum", "-H2", "-"], input=b, capture_output=True, check=True)
    return bytes.fromhex(p.stdout.split()[0].decode())


REFS = {}


def reference(n):
    """An uninterrupted run on n ranks (num_ranks is in the file)."""
    if n not in REFS:
        p = run(n, f"ref{n}")
        assert p.returncode == 0, p.stderr
        REFS[n] = out_of(f"ref{n}")
    return REFS[n]


def read_bytes(fn):
    with open(fn, "rb") as f:
        return f.read()


def same_bytes(a, b):
    return read_bytes(a) == read_bytes(b)


def start_slow(folder, n, journal_bytes, **popen):
    """The command on n ranks in TMP/folder, every unit made 20 ms slower,
    once its journal holds journal_bytes: (folder, journal, Popen)."""
    d = os.path.join(TMP, folder)
    os.makedirs(d, exist_ok=True)
    journal = os.path.join(d, "x.h5.journal")
    pr = subprocess.Popen(cmd(n, "x.h5"), cwd=d, env=dict(ENV, **CHUNKS, PQ_TEST_SLOW_RANK="0,1"), **popen)
    t0 = time.time()
    while time.time() - t0 < 60 and (not os.path.exists(journal) or os.path.getsize(journal) < journal_bytes):
        time.sleep(0.05)
    return d, journal, pr


class KillPoints(unittest.TestCase):
    def stop_then_resume(self, name, n, env, n_resume, expect_done=None):
        p = run(n, name, env=env)
        self.assertNotEqual(p.returncode, 0, f"{name}: the fault switch did not stop the run")
        if env.get("PQ_TEST_KILL_AT") == "5":  # after the rename: OUT whole, the journal still there
            self.assertTrue(same_bytes(out_of(name), reference(max(n, 1))))
        else:
            self.assertFalse(os.path.exists(out_of(name)), f"{name}: an output after a stop")
        journal = out_of(name, "x.h5.journal")
        if expect_done is not None:
            units = {r[2] for r in read_journal(journal)[1] if r[1] == 1 and r[4]}
            expect_done(units)
        p = run(n_resume, name, ["--resume"])
        self.assertEqual(p.returncode, 0, f"{name}: resume failed:\n{p.stderr}")
        self.assertTrue(same_bytes(out_of(name), reference(n_resume)),
                        f"{name}: resumed file differs from an uninterrupted run on {n_resume} ranks")
        self.assertFalse(os.path.exists(journal), f"{name}: journal left after the commit")
        self.assertFalse(os.path.exists(out_of(name, "x.h5.partial")))

    def test_fault_points_one_and_two_ranks(self):
        # 1 before the plan, 2 journal made, 3 after the floats, 4 before the
        # rename, 5 after it
        for point in (1, 2, 3, 4, 5):
            for n, nr in ((1, 2), (2, 1)):
                with self.subTest(point=point, ranks=n, resume_ranks=nr):
                    self.stop_then_resume(f"at{point}_n{n}", n, {"PQ_TEST_KILL_AT": str(point)}, nr)

    def test_killed_mid_run_and_mid_record(self):
        for n, nr in ((1, 1), (2, 2), (2, 3), (1, 2)):
            with self.subTest(after=150, ranks=n, resume_ranks=nr):
                self.stop_then_resume(f"after_n{n}_{nr}", n, {"PQ_TEST_KILL_AFTER": "150"}, nr,
                                      lambda u: self.assertEqual(len(u), 150))
        for n in (1, 2):
            with self.subTest(mid_record=300, ranks=n):
                # unit 300's record is cut: the rest of the file is dropped, 300 redone
                self.stop_then_resume(f"midrec_n{n}", n, {"PQ_TEST_KILL_JOURNAL": "300"}, 2,
                                      lambda u: self.assertNotIn(300, u))

    def real_kill(self, name, n, victim):
        d, journal, pr = start_slow(name, n, 200_000, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        self.assertIsNone(pr.poll(), "the run ended before it could be killed")
        victim(pr)
        pr.wait(timeout=60)
        self.assertFalse(os.path.exists(os.path.join(d, "x.h5")))

    def test_real_kill_9(self):
        def kill_one(pr):  # rank 1 only: the launcher takes the others down
            self.assertTrue(kill_rank(pr, 1), "no rank 1 found")
        for name, n, victim, nr in (("kill9_all_n2", 2, kill_all, 1), ("kill9_one_n2", 2, kill_one, 2),
                                    ("kill9_all_n1", 0, kill_all, 2)):
            with self.subTest(name):
                self.real_kill(name, n, victim)
                p = run(nr, name, ["--resume"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(same_bytes(out_of(name), reference(nr)))

    def test_sigusr1_and_sigterm_stop_with_status_14(self):
        for sig, n in ((signal.SIGUSR1, 2), (signal.SIGTERM, 0)):
            name = f"sig{int(sig)}_n{n}"
            with self.subTest(name):
                d, journal, pr = start_slow(name, n, 100_000, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)
                pr.send_signal(sig)  # mpirun forwards SIGUSR1 to the ranks
                out, err = pr.communicate(timeout=60)
                self.assertEqual(pr.returncode, INTERRUPTED, err)
                self.assertIn("proteus: interrupted: stopped by SIG", err)
                self.assertIn("--resume", err)
                # the journal names the codes in OUT.partial: both stay
                self.assertTrue(os.path.exists(os.path.join(d, "x.h5.partial")))
                self.assertTrue(os.path.exists(journal))
                p = run(n, name, ["--resume"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(same_bytes(out_of(name), reference(n if n else 1)))


class Gptq(unittest.TestCase):
    def test_resume_mid_layer(self):
        # GPTQ: the journal's units of a layer come back on every rank, whole
        # layers skip their Hessians, and each layer's forward with the
        # dequantized weights recomputes the next layer's inputs
        fasta = os.path.join(TMP, "gptq8.fasta")
        sample = os.path.join(os.path.dirname(__file__), "..", "..", "data", "proteins", "calib_sample.fasta")
        with open(sample) as f, open(fasta, "w") as g:
            g.write("".join(">" + r for r in f.read().split(">")[1:9]))
        extra = ["--method", "gptq", "--precision", "int4", "--calibration-data", "../gptq8.fasta"]
        p = run(2, "gptq_ref", extra)
        self.assertEqual(p.returncode, 0, p.stderr)
        # layer 0 whole and part of layer 1 (about 78 units a layer at 64k)
        p = run(1, "gptq", extra, env={"PQ_TEST_KILL_AFTER": "120"})
        self.assertNotEqual(p.returncode, 0)
        units = {r[2] for r in read_journal(out_of("gptq", "x.h5.journal"))[1] if r[1] == 1}
        self.assertEqual(len(units), 120)
        p = run(2, "gptq", extra + ["--resume"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(same_bytes(out_of("gptq"), out_of("gptq_ref")))


class Refusals(unittest.TestCase):
    def stopped(self, name, n=1):
        p = run(n, name, env={"PQ_TEST_KILL_AFTER": "100"})
        self.assertNotEqual(p.returncode, 0)
        return out_of(name, "x.h5.journal")

    def test_existing_journal_needs_resume(self):
        j = self.stopped("nores")
        before = read_bytes(j)
        p = run(1, "nores")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("x.h5.journal exists", p.stderr)
        self.assertIn("pass --resume", p.stderr)
        self.assertEqual(read_bytes(j), before, "the journal was touched")

    def test_other_configuration_model_version_refused(self):
        j = self.stopped("mismatch")
        before = read_bytes(j)
        p = run(1, "mismatch", ["--resume", "--asymmetric"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("configuration: this run has", p.stderr)
        self.assertIn('"symmetric":false', p.stderr.replace(" ", ""))
        other = os.path.join(TMP, "t6_f16.safetensors")  # the same tensors stored as f16
        subprocess.run([PROTEUS, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "1", "--dtype", "f16",
                        "--out", other], check=True, capture_output=True)
        p = run(1, "mismatch", ["--resume"], model=other)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("was written by a different run", p.stderr)
        self.assertRegex(p.stderr, r"model_bytes: this run has 15\d+, the journal 30\d+")
        rewrite_header(j, lambda t: t.replace("\nproteus ", "\nproteus 0.0.1-old"))
        p = run(1, "mismatch", ["--resume"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertRegex(p.stderr, r"proteus: this run has \S+, the journal 0\.0\.1-old")
        rewrite_header(j, lambda t: t.replace("\nproteus 0.0.1-old", "\nproteus "))
        self.assertEqual(read_bytes(j), before)  # the rewrite is exact
        p = run(1, "mismatch", ["--resume"])
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_damaged_record_redone(self):
        j = self.stopped("damaged", 2)
        text, recs = read_journal(j)
        units = [r for r in recs if r[1] == 1]
        pos, _, uid, payload, ok = units[len(units) // 2]
        self.assertTrue(ok)
        with open(j, "r+b") as f:  # one bit of its codes
            f.seek(pos + 32 + 8 + len(payload) // 3)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x10]))
        self.assertFalse(read_journal(j)[1][recs.index(units[len(units) // 2])][4])
        p = run(1, "damaged", ["--resume"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"record of unit {uid}", p.stderr)
        self.assertIn("fails its checksum", p.stderr)
        self.assertTrue(same_bytes(out_of("damaged"), reference(1)))

    def test_damaged_codes_in_partial_redone(self):
        # the journal records where each unit's codes lie in OUT.partial and
        # their checksum; codes damaged there after the record was written
        # (one byte of one unit) make --resume redo that unit alone
        j = self.stopped("badcodes", 2)
        text, recs = read_journal(j)
        alg = dict(line.split(" ", 1) for line in text.splitlines())["codes_checksum"]
        units = [r for r in recs if r[1] == 1 and r[4]]
        partial = out_of("badcodes", "x.h5.partial")
        with open(partial, "rb") as f:
            data = f.read()
        for _, _, _, payload, _ in units:  # every recorded checksum, by an independent hash
            off, n, field = unit_codes(payload)
            codes = data[off:off + n]
            want = hashlib.sha256(codes).digest() if alg == "sha256" else xxh3_128(codes) + bytes(16)
            self.assertEqual(field, want)
        _, _, uid, payload, _ = units[len(units) // 2]
        off, n, _ = unit_codes(payload)
        with open(partial, "r+b") as f:
            f.seek(off + n // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x01]))
        p = run(1, "badcodes", ["--resume"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"the codes of unit {uid} no longer match their checksum", p.stderr)
        self.assertEqual(p.stderr.count("no longer match"), 1, p.stderr)
        self.assertTrue(same_bytes(out_of("badcodes"), reference(1)))

    def test_missing_partial_redoes_all(self):
        j = self.stopped("nopartial")
        os.remove(out_of("nopartial", "x.h5.partial"))
        p = run(1, "nopartial", ["--resume"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("x.h5.partial is missing: the 100 units", p.stderr)
        self.assertTrue(same_bytes(out_of("nopartial"), reference(1)))

    def test_old_journal_version_refused(self):
        # a version-1 journal (the codes inside it) is refused, not misread
        j = self.stopped("oldver")
        with open(j, "r+b") as f:
            f.seek(8)
            f.write(struct.pack("<I", 1))
        p = run(1, "oldver", ["--resume"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("journal version 1", p.stderr)
        self.assertIn("reads and writes version 2", p.stderr)
        self.assertFalse(os.path.exists(out_of("oldver")))

    def test_cut_at_any_byte(self):
        # a power cut keeps some prefix of the journal: cut it inside the
        # header, inside a record's head, inside a payload, inside a sum and
        # at a record's end; each resumes to the same bytes
        j = self.stopped("cutsrc", 2)
        d = read_bytes(j)
        recs = read_journal(j)[1]
        pos, _, _, payload, _ = recs[len(recs) // 2]
        end = pos + 64 + len(payload)
        for cut in (20, pos + 10, pos + 32 + len(payload) // 2, end - 5, end):
            with self.subTest(cut=cut):
                name = f"cut{cut}"
                os.makedirs(os.path.join(TMP, name), exist_ok=True)
                with open(out_of(name, "x.h5.journal"), "wb") as f:
                    f.write(d[:cut])
                p = run(1, name, ["--resume"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(same_bytes(out_of(name), reference(1)))

    def test_changed_checkpoint_refused(self):
        # the same names, shapes and sizes, one weight's byte changed: only
        # the digest leaves the journal recorded can tell (those of the bytes
        # the stopped run read: a chunk is hashed just ahead of its units, so
        # the byte is in the first chunk, which it hashed before any unit)
        os.makedirs(os.path.join(TMP, "changed"), exist_ok=True)
        model = os.path.join(TMP, "changed", "t6.safetensors")
        shutil.copy(MODEL, model)
        p = run(1, "changed", env={"PQ_TEST_KILL_AFTER": "100"}, model="t6.safetensors")
        self.assertNotEqual(p.returncode, 0)
        with open(model, "r+b") as f:  # 1000 bytes into the tensor data
            header = int.from_bytes(f.read(8), "little")
            f.seek(8 + header + 1000)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x01]))
        p = run(1, "changed", ["--resume"], model="t6.safetensors")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("the checkpoint changed since", p.stderr)
        self.assertFalse(os.path.exists(out_of("changed")))

    def test_second_writer_refused(self):
        d = os.path.join(TMP, "lock")
        os.makedirs(d, exist_ok=True)
        # a lock held by another process (Python's flock, not Proteus's)
        j = os.path.join(d, "x.h5.journal")
        with open(j, "w") as holder:
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            p = run(1, "lock")
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertIn("x.h5.journal is locked: another proteus run is writing the same --out", p.stderr)
        os.remove(j)
        # two real runs at once: the second refuses, the first is unharmed
        # (the first is held with SIGSTOP while the second tries, so that it
        # cannot finish first on a busy machine; a stopped process keeps its lock)
        _, _, first = start_slow("lock", 2, 20_000, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        held = session(first)
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        try:
            self.assertIsNone(first.poll(), "the first run ended before the second could try")
            p = run(1, "lock")
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertIn("is locked", p.stderr)
            p = run(1, "lock", ["--resume"])
            self.assertEqual(p.returncode, 3, p.stderr)
        finally:
            for pid in held:
                os.kill(pid, signal.SIGCONT)
        _, err = first.communicate(timeout=120)
        self.assertEqual(first.returncode, 0, err)
        self.assertTrue(same_bytes(out_of("lock"), reference(2)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
