# SPDX-License-Identifier: Apache-2.0
"""test_calib_resume.py - `proteus calibrate --resume` after a stop at many
points: fault switches that SIGKILL rank 0 (before the data is read, once
the journal is made, after n blocks, halfway through a block's record,
before and after the store's rename) or rank 1 after its first block, a
real kill -9 of one rank and of every rank, SIGUSR1 and SIGTERM; then
--resume on the same or the other rank count must give the bytes of an
uninterrupted run (`cmp`). The uninterrupted journaled run is itself
checked against the collection that keeps no journal (--pipeline-stages 2,
whose statistics travel by MPI reduction, not by blocks). Also: a journal
of another version, data option or model refused naming the difference;
an existing journal refused without --resume; a damaged record redone; a
second run on the same --out refused (the lock); an interrupted --update
in place resumed.

The journal's bytes are read and rewritten here with Python's own hashlib
from docs/FORMAT.md's description, not with Proteus's code.

usage: test_calib_resume.py PROTEUS MPIEXEC FASTA [unittest args]"""
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
from struct import error as struct_error

from journal_bytes import kill_all, kill_rank, read_journal, rewrite_header

PROTEUS = os.path.abspath(sys.argv.pop(1))
MPIEXEC = sys.argv.pop(1)
FASTA = os.path.abspath(sys.argv.pop(1))
TMP = tempfile.mkdtemp(prefix="pq_calres_")
atexit.register(shutil.rmtree, TMP, True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
# 24 sequences in 6 blocks of 4
ARGS = ["--calibration-data", FASTA, "--max-seqs", "24", "--journal-block", "4", "--threads", "1", "-q"]
N_BLOCKS = 6
INTERRUPTED = 14
MODEL = os.path.join(TMP, "t6.safetensors")


def setUpModule():
    subprocess.run([PROTEUS, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "1", "--out", MODEL],
                   check=True, capture_output=True)


def cmd(n, extra=(), args=None):
    c = [PROTEUS, "calibrate", "--model", "../t6.safetensors", "--out", "c.h5", *(ARGS if args is None else args),
         *extra]
    return [MPIEXEC, "-n", str(n), "--oversubscribe"] + c if n else c


def run(n, folder, extra=(), env=None, timeout=180, args=None):
    d = os.path.join(TMP, folder)
    os.makedirs(d, exist_ok=True)
    return subprocess.run(cmd(n, extra, args), cwd=d, capture_output=True, text=True, env=dict(ENV, **(env or {})),
                          timeout=timeout)


def out_of(folder, name="c.h5"):
    return os.path.join(TMP, folder, name)


def read_bytes(fn):
    with open(fn, "rb") as f:
        return f.read()


REF = []


def reference():
    """An uninterrupted run on one process."""
    if not REF:
        p = run(0, "ref")
        assert p.returncode == 0, p.stderr
        REF.append(read_bytes(out_of("ref")))
    return REF[0]


def blocks_in(fn):
    return {r[2] for r in read_journal(fn)[1] if r[1] == 3 and r[4]}


def has_block(journal):
    try:
        return bool(blocks_in(journal))
    except (OSError, AssertionError, struct_error):  # not there yet, or its header half written
        return False


def start(folder, n, **popen):
    """The command on n ranks in TMP/folder, once its journal holds a whole
    block: (folder, journal, Popen)."""
    d = os.path.join(TMP, folder)
    os.makedirs(d, exist_ok=True)
    journal = os.path.join(d, "c.h5.journal")
    pr = subprocess.Popen(cmd(n), cwd=d, env=ENV, **popen)
    t0 = time.time()
    while time.time() - t0 < 120 and pr.poll() is None and not has_block(journal):
        time.sleep(0.02)
    return d, journal, pr


class Reference(unittest.TestCase):
    def test_journaled_run_equals_the_reduction(self):
        # the blocks' merge against the MPI reduction of per-rank shards
        # (pipeline stages keep no journal), and 2 ranks against 1
        p = run(2, "ref_pipe", args=[a for a in ARGS if a not in ("--journal-block", "4")] +
                ["--pipeline-stages", "2"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_bytes(out_of("ref_pipe")), reference())
        p = run(2, "ref2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_bytes(out_of("ref2")), reference())
        self.assertFalse(os.path.exists(out_of("ref2", "c.h5.journal")))
        # the block size changes the journal, never the statistics
        p = run(0, "ref_b7", ["--journal-block", "7"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_bytes(out_of("ref_b7")), reference())


class KillPoints(unittest.TestCase):
    def stop_then_resume(self, name, n, env, n_resume, expect_blocks=None):
        p = run(n, name, env=env)
        self.assertNotEqual(p.returncode, 0, f"{name}: the fault switch did not stop the run")
        if env.get("PQ_TEST_KILL_AT") == "5":  # after the rename: the store whole, the journal still there
            self.assertEqual(read_bytes(out_of(name)), reference())
        else:
            self.assertFalse(os.path.exists(out_of(name)), f"{name}: a store after a stop")
        journal = out_of(name, "c.h5.journal")
        if expect_blocks is not None:
            expect_blocks(blocks_in(journal))
        p = run(n_resume, name, ["--resume"])
        self.assertEqual(p.returncode, 0, f"{name}: resume failed:\n{p.stderr}")
        self.assertEqual(read_bytes(out_of(name)), reference(),
                         f"{name}: resumed store differs from an uninterrupted run")
        self.assertFalse(os.path.exists(journal), f"{name}: journal left after the store was written")
        self.assertFalse(os.path.exists(out_of(name, "c.h5.partial")))

    def test_fault_points_one_and_two_ranks(self):
        # 1 before the data, 2 journal made, 4 before the rename, 5 after it
        for point in (1, 2, 4, 5):
            for n, nr in ((0, 2), (2, 1)):
                with self.subTest(point=point, ranks=n, resume_ranks=nr):
                    self.stop_then_resume(f"at{point}_n{n}", n, {"PQ_TEST_KILL_AT": str(point)}, nr)

    def test_killed_after_blocks_and_mid_record(self):
        for n, nr in ((0, 0), (2, 2), (2, 1), (0, 2)):
            with self.subTest(after=3, ranks=n, resume_ranks=nr):
                self.stop_then_resume(f"after_n{n}_{nr}", n, {"PQ_TEST_KILL_AFTER": "3"}, nr,
                                      lambda b: self.assertEqual(len(b), 3))
        for n in (0, 2):
            with self.subTest(mid_record=2, ranks=n):
                # block 2's record is cut halfway: dropped and redone
                self.stop_then_resume(f"midrec_n{n}", n, {"PQ_TEST_KILL_JOURNAL": "2"}, 2,
                                      lambda b: (self.assertNotIn(2, b), self.assertIn(1, b)))
        with self.subTest(kill_rank=1):
            # rank 1 dies after its first block: the launcher takes rank 0 down
            self.stop_then_resume("rank1", 2, {"PQ_TEST_KILL_RANK": "1"}, 0)

    def test_real_kill_9(self):
        def kill_one(pr):  # rank 1 only
            self.assertTrue(kill_rank(pr, 1), "no rank 1 found")
        for name, n, victim, nr in (("kill9_all_n2", 2, kill_all, 0), ("kill9_one_n2", 2, kill_one, 2),
                                    ("kill9_all_n1", 0, kill_all, 2)):
            with self.subTest(name):
                d, journal, pr = start(name, n, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
                self.assertIsNone(pr.poll(), "the run ended before it could be killed")
                victim(pr)
                pr.wait(timeout=60)
                self.assertFalse(os.path.exists(os.path.join(d, "c.h5")))
                self.assertTrue(blocks_in(journal))
                p = run(nr, name, ["--resume"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(read_bytes(out_of(name)), reference())

    def test_sigusr1_and_sigterm_stop_with_status_14(self):
        for sig, n in ((signal.SIGUSR1, 2), (signal.SIGTERM, 0)):
            name = f"sig{int(sig)}_n{n}"
            with self.subTest(name):
                d, journal, pr = start(name, n, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
                pr.send_signal(sig)  # mpirun forwards SIGUSR1 to the ranks
                out, err = pr.communicate(timeout=120)
                self.assertEqual(pr.returncode, INTERRUPTED, err)
                self.assertIn("proteus: interrupted: stopped by SIG", err)
                self.assertIn("--resume", err)
                self.assertFalse(os.path.exists(os.path.join(d, "c.h5")))
                self.assertFalse(os.path.exists(os.path.join(d, "c.h5.partial")))
                done = blocks_in(journal)
                self.assertTrue(0 < len(done) < N_BLOCKS, done)
                p = run(n, name, ["--resume"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(read_bytes(out_of(name)), reference())


class Refusals(unittest.TestCase):
    def stopped(self, name, n=0):
        p = run(n, name, env={"PQ_TEST_KILL_AFTER": "2"})
        self.assertNotEqual(p.returncode, 0)
        return out_of(name, "c.h5.journal")

    def test_existing_journal_needs_resume(self):
        j = self.stopped("nores")
        before = read_bytes(j)
        p = run(0, "nores")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("c.h5.journal exists", p.stderr)
        self.assertIn("--resume", p.stderr)
        self.assertEqual(read_bytes(j), before, "a refused run changed the journal")

    def test_other_version_data_model_refused(self):
        edits = (("proteus", lambda t: t.replace("\nproteus ", "\nproteus 0.0.0-other", 1)),
                 ("max_seqs", None), ("model", None))
        for key, edit in edits:
            with self.subTest(key):
                j = self.stopped(f"other_{key}")
                if edit:
                    rewrite_header(j, edit)
                    extra, args = ["--resume"], None
                elif key == "max_seqs":
                    extra, args = ["--resume"], [a if a != "24" else "20" for a in ARGS]
                else:
                    other = os.path.join(TMP, "t6b.safetensors")
                    if not os.path.exists(other):
                        subprocess.run([PROTEUS, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "2", "--out",
                                        other], check=True, capture_output=True)
                    extra, args = ["--resume", "--model", "../t6b.safetensors"], None
                before = read_bytes(j)
                p = run(0, f"other_{key}", extra, args=args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("was written by a different run", p.stderr)
                self.assertIn(f"{key}: this run has", p.stderr)
                self.assertEqual(read_bytes(j), before)
                self.assertFalse(os.path.exists(out_of(f"other_{key}")))

    def test_damaged_record_redone(self):
        j = self.stopped("damaged")
        recs = [r for r in read_journal(j)[1] if r[1] == 3]
        self.assertEqual(len(recs), 2)
        d = bytearray(read_bytes(j))
        d[recs[0][0] + 32 + len(recs[0][3]) // 3] ^= 0x40  # a byte inside block 0's statistics
        with open(j, "wb") as f:
            f.write(d)
        p = run(2, "damaged", ["--resume"], args=[a for a in ARGS if a != "-q"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("fails its checksum; it is redone", p.stderr)
        self.assertEqual(read_bytes(out_of("damaged")), reference())

    def test_second_writer_refused(self):
        d = os.path.join(TMP, "lock")
        os.makedirs(d, exist_ok=True)
        j = os.path.join(d, "c.h5.journal")
        with open(j, "w") as holder:  # a lock held by another process (Python's flock)
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            p = run(0, "lock")
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertIn("c.h5.journal is locked: another proteus run is writing the same --out", p.stderr)
            p = run(2, "lock", ["--resume"])
            self.assertEqual(p.returncode, 3, p.stderr)
        os.remove(j)
        p = run(0, "lock")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_bytes(out_of("lock")), reference())

    def test_update_in_place_resumed(self):
        # --update A.h5 with new data, stopped and resumed, equals the same
        # update uninterrupted; once the store was replaced in place, the
        # old journal no longer fits it
        upd = ["--calibration-data", FASTA, "--max-seqs", "12", "--journal-block", "4", "--threads", "1", "-q"]
        for name in ("upd_ref", "upd"):
            d = os.path.join(TMP, name)
            os.makedirs(d, exist_ok=True)
            shutil.copy(self._ref(), os.path.join(d, "a.h5"))

        def update(name, extra=(), env=None):
            return subprocess.run([PROTEUS, "calibrate", "--update", "a.h5", *upd, *extra], cwd=os.path.join(TMP, name),
                                  capture_output=True, text=True, env=dict(ENV, **(env or {})), timeout=180)
        p = update("upd_ref")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = update("upd", env={"PQ_TEST_KILL_AFTER": "2"})
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(blocks_in(out_of("upd", "a.h5.journal")), {0, 1})
        p = update("upd", ["--resume"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_bytes(out_of("upd", "a.h5")), read_bytes(out_of("upd_ref", "a.h5")))
        # stopped after the store was replaced: the journal is of the old store
        p = update("upd", env={"PQ_TEST_KILL_AT": "5"})
        self.assertNotEqual(p.returncode, 0)
        p = update("upd", ["--resume"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("update: this run has", p.stderr)

    def _ref(self):
        reference()
        return out_of("ref")


if __name__ == "__main__":
    unittest.main(verbosity=2)
