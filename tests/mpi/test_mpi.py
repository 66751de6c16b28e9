# SPDX-License-Identifier: Apache-2.0
"""test_mpi.py - `proteus quantize` on N MPI ranks, end to end: identical
datasets for N = 1..4 (and the singleton, and other thread counts), the same
file bytes but for num_ranks for N = 1..8, codes
checked against an independent numpy reference, a failing rank, a killed
rank, a plan mismatch, and the ZeroMQ monitor receiving a real run's events.

usage: test_mpi.py PROTEUS MPIEXEC [unittest args]"""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

from journal_bytes import read_journal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cli"))
import stref  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import path, scratch  # noqa: E402

PROTEUS = os.path.abspath(sys.argv.pop(1))
MPIEXEC = sys.argv.pop(1)
TMP = scratch("pq_mpi_")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
# Small units so that every rank gets many of them on a small model.
COMMON = ["--per-channel", "--unit-bytes", "64k"]
# The t6 source (30 MB) is one 64 MiB digest chunk, which outweighs all its
# units: the rank that hashes it would get no unit. Tests about workers' units
# cut the digest into 1 MB chunks so that the plan spreads hashing too.
SMALL_CHUNKS = {"PQ_TEST_HASH_CHUNK_BYTES": "1000000"}


MODEL = path("t6.safetensors")


def setUpModule():
    subprocess.run([PROTEUS, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "1", "--out", MODEL],
                   check=True, capture_output=True)


def quantize(n, out, *extra, env=None, timeout=120, check=True):
    """n = 0: the plain singleton; else mpiexec -n n."""
    cmd = [PROTEUS, "quantize", "--model", MODEL, "--out", out, *COMMON, *extra]
    if n:
        cmd = [MPIEXEC, "-n", str(n), "--oversubscribe"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, **(env or {})), timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def datasets(fn):
    """{path: (dtype, shape, bytes)} of every dataset in an HDF5 file."""
    out = {}
    with h5py.File(fn, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                out[name] = (str(a.dtype), a.shape, np.ascontiguousarray(a).tobytes())
        f.visititems(visit)
    return out


def xxh3_128(b):
    """XXH3-128 of b by the xxhsum tool (Debian's xxhash), canonical bytes."""
    p = subprocess.run(["xxhsum", "-H2", "-"], input=b, capture_output=True, check=True)
    return bytes.fromhex(p.stdout.split()[0].decode())


def tree_digest(fn, chunk, alg="xxh3-128"):
    """The source digest of docs/FORMAT.md, computed here with hashlib
    (sha256) or xxhsum (xxh3-128)."""
    h = (lambda b: hashlib.sha256(b).digest()) if alg == "sha256" else xxh3_128
    with open(fn, "rb") as fh:
        d = fh.read()
    leaves = b"".join(h(d[i:i + chunk]) for i in range(0, len(d), chunk))
    return h(leaves).hex()


def attr_str(a):
    return a.decode() if isinstance(a, bytes) else a


def rank0_of(launcher):
    """The pid of rank 0 among the launcher's children (its environment says)."""
    for pid in subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True).stdout.split():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if b"OMPI_COMM_WORLD_RANK=0" in f.read().split(b"\0"):
                    return int(pid)
        except OSError:
            pass
    raise AssertionError(f"no rank 0 among the children of {launcher}")


def proteus_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("proteus:")]


class Determinism(unittest.TestCase):
    def test_identical_for_any_rank_and_thread_count(self):
        runs = {"singleton": (0, ["--threads", "2"]), "n1": (1, []), "n2": (2, ["--threads", "1"]),
                "n3": (3, []), "n4": (4, ["--threads", "1"]), "n2_t2": (2, ["--threads", "2"])}
        outs = {}
        for name, (n, extra) in runs.items():
            outs[name] = path(f"det_{name}.h5")
            p = quantize(n, outs[name], *extra)
            self.assertIn("wrote", p.stdout)
            # the peak memory line reports one value per rank
            m = re.search(r"ranks:\s+(\d+),.*peak RSS(.*)", p.stdout)
            self.assertIsNotNone(m, p.stdout)
            self.assertEqual(int(m.group(1)), max(n, 1))
            self.assertEqual(len(re.findall(r" r\d+ [\d.]+ MiB", m.group(2))), max(n, 1))
        ref = datasets(outs["n1"])
        self.assertGreater(len(ref), 50)
        sha = tree_digest(MODEL, 64 << 20)
        for name, fn in outs.items():
            got = datasets(fn)
            self.assertEqual(sorted(got), sorted(ref), name)
            for k in ref:
                self.assertEqual(got[k], ref[k], f"{name}: dataset {k} differs from the n1 run")
            with h5py.File(fn, "r") as f:
                self.assertEqual(int(f.attrs["num_ranks"]), max(runs[name][0], 1))
                # the leaves come from whichever ranks the plan chose
                self.assertEqual(attr_str(f.attrs["source_digest_tree"]), sha, name)
                self.assertEqual(attr_str(f.attrs["source_digest_algorithm"]), "xxh3-128", name)
                self.assertEqual(int(f.attrs["source_hash_chunk_bytes"]), 64 << 20)
                self.assertNotIn("source_sha256", f.attrs)

    def test_large_source_and_output_paths_any_rank_count(self):
        # What a checkpoint larger than the page cache turns on (forced): the
        # source dropped from the cache chunk by chunk once read, the codes
        # written behind (the workers' into the file too): the same datasets.
        quantize(1, path("big_ref.h5"))
        ref = datasets(path("big_ref.h5"))
        env = dict(SMALL_CHUNKS, PQ_TEST_DROP_SOURCE="1", PQ_TEST_WRITE_BEHIND="65536")
        for n, extra in ((0, ["--threads", "2"]), (2, ["--threads", "1"]), (3, [])):
            out = path(f"big_n{n}.h5")
            quantize(n, out, *extra, env=env)
            got = datasets(out)
            self.assertEqual(sorted(got), sorted(ref), n)
            for k in ref:
                self.assertEqual(got[k], ref[k], f"-n {n}: dataset {k} differs")

    def test_same_file_bytes_for_1_to_8_ranks(self):
        # The same command line for every rank count (one --out path, reused):
        # the whole file must be the same bytes but for the root attribute
        # num_ranks (one byte here) and the 4-byte checksum of the root group's
        # object header that holds it (docs/FORMAT.md, "Determinism").
        out = path("ranks.h5")
        ref = None
        for n in range(1, 9):
            quantize(n, out, env=SMALL_CHUNKS, timeout=300)
            with h5py.File(out, "r") as f:
                self.assertEqual(int(f.attrs["num_ranks"]), n)
            with open(out, "rb") as f:
                got = np.frombuffer(f.read(), np.uint8)
            os.remove(out)
            if ref is None:
                ref = got
                continue
            self.assertEqual(len(got), len(ref), f"{n} ranks: file size differs from 1 rank")
            diff = np.nonzero(got != ref)[0]
            self.assertLessEqual(len(diff), 5, f"{n} ranks: bytes {diff[:20].tolist()} differ from 1 rank")
            self.assertLess(int(diff.max() - diff.min()) if len(diff) else 0, 1024,
                            f"{n} ranks: differences spread over {diff.tolist()}")

    def test_slow_rank_units_taken_over(self):
        # rank 1 sleeps 20 ms per unit: the others take over the end of its
        # list, and the output does not change
        ref = path("steal_ref.h5")
        quantize(1, ref, env=SMALL_CHUNKS)
        want = datasets(ref)
        for n, slow in ((2, "1"), (3, "1"), (3, "0")):
            out = path(f"steal_n{n}_{slow}.h5")
            p = quantize(n, out, "--threads", "1", "--verbose", env={"PQ_TEST_SLOW_RANK": slow, **SMALL_CHUNKS})
            ran = {int(r): (int(a), int(b)) for r, a, b in
                   re.findall(r"\[r(\d) \w+\] debug: ran (\d+) units, (\d+) of them taken over", p.stderr)}
            self.assertEqual(sorted(ran), list(range(n)), p.stderr)
            units = int(re.search(r"(\d+) units over", p.stderr).group(1))
            self.assertEqual(sum(a for a, _ in ran.values()), units, p.stderr)
            self.assertEqual(ran[int(slow)][1], 0, p.stderr)  # the slow rank takes nothing over
            self.assertGreater(sum(b for _, b in ran.values()), 0, p.stderr)
            got = datasets(out)
            self.assertEqual(sorted(got), sorted(want))
            for k in want:
                self.assertEqual(got[k], want[k], f"-n {n}, rank {slow} slow: dataset {k}")

    def test_digest_from_many_chunks_any_rank_count(self):
        # 100 kB chunks: ~300 leaves spread over every rank, combined on rank 0
        chunk = 100000
        want = {alg: tree_digest(MODEL, chunk, alg) for alg in ("xxh3-128", "sha256")}
        for n, extra in ((1, []), (2, ["--threads", "1"]), (3, []), (4, ["--threads", "1"]), (1, ["--threads", "2"]),
                         (2, ["--digest", "sha256"]), (1, ["--digest", "sha256", "--threads", "2"])):
            out = path(f"chunks_n{n}_{len(extra)}.h5")
            quantize(n, out, *extra, env={"PQ_TEST_HASH_CHUNK_BYTES": str(chunk)})
            alg = "sha256" if "sha256" in extra else "xxh3-128"
            with h5py.File(out, "r") as f:
                self.assertEqual(attr_str(f.attrs["source_digest_algorithm"]), alg, f"-n {n} {extra}")
                self.assertEqual(attr_str(f.attrs["source_digest_tree"]), want[alg], f"-n {n} {extra}")
                self.assertEqual(int(f.attrs["source_hash_chunk_bytes"]), chunk)

    def test_codes_sent_or_written_in_place(self):
        # Ranks on rank 0's machine write their codes into OUT.partial
        # themselves; the others (here: ranks made to count as remote) send
        # them. Any mix gives the datasets of one rank.
        quantize(1, path("mix_n1.h5"))
        ref = datasets(path("mix_n1.h5"))
        for n, remote in ((2, "1"), (3, "2"), (4, "1,3")):
            out = path(f"mix_n{n}.h5")
            p = quantize(n, out, "--threads", "1", "--verbose", env={"PQ_TEST_REMOTE_RANKS": remote, **SMALL_CHUNKS})
            far = {int(r) for r in remote.split(",")}
            for r in range(1, n):
                direct = f"[r{r} worker] debug: writing its codes straight into {out}.partial" in p.stderr
                self.assertEqual(direct, r not in far, f"-n {n}, rank {r}, remote {remote}:\n{p.stderr}")
            got = datasets(out)
            self.assertEqual(sorted(got), sorted(ref))
            for k in ref:
                self.assertEqual(got[k], ref[k], f"-n {n} remote {remote}: dataset {k}")
        # int4 codes (two per byte, rows packed on their own) with zero points
        int4 = ["--precision", "int4", "--asymmetric"]
        quantize(1, path("mix4_n1.h5"), *int4)
        quantize(3, path("mix4_n3.h5"), *int4, "--threads", "1", env={"PQ_TEST_REMOTE_RANKS": "2", **SMALL_CHUNKS})
        ref4, got4 = datasets(path("mix4_n1.h5")), datasets(path("mix4_n3.h5"))
        self.assertTrue(any(k.endswith("/zero_point") for k in ref4))
        self.assertEqual(sorted(got4), sorted(ref4))
        for k in ref4:
            self.assertEqual(got4[k], ref4[k], f"int4 -n 3: dataset {k}")

    def test_static_scheme_any_rank_count(self):
        # calibration on the ranks (sharded by sequence id, merged exactly),
        # then int8 weights + activation scales: the same datasets for 1..4
        sample = os.path.join(os.path.dirname(__file__), "..", "..", "data", "proteins", "calib_sample.fasta")
        with open(sample) as f:
            recs = f.read().split(">")[1:9]
        fasta = path("static8.fasta")
        with open(fasta, "w") as f:
            f.write("".join(">" + r for r in recs))
        ref = None
        for n in (1, 2, 3, 4):
            out = path(f"static_n{n}.h5")
            quantize(n, out, "--scheme", "static", "--calibration-data", fasta, "--calibration-method", "entropy",
                     "--asymmetric", "--threads", "1")
            got = datasets(out)
            self.assertTrue(any(k.endswith("/act_scale") for k in got), sorted(got)[:5])
            self.assertTrue(any(k.startswith("calibration/") for k in got), sorted(got)[:5])
            if ref is None:
                ref = got
                continue
            self.assertEqual(sorted(got), sorted(ref), f"-n {n}")
            for k in ref:
                self.assertEqual(got[k], ref[k], f"static -n {n}: dataset {k}")

    def test_gptq_any_rank_and_thread_count(self):
        # GPTQ layer by layer: each rank's share of the calibration sequences,
        # Hessians summed exactly over the ranks, each layer's rows shared out;
        # the same datasets for 1, 2, 3 ranks and 2 threads
        fasta = path("gptq8.fasta")
        sample = os.path.join(os.path.dirname(__file__), "..", "..", "data", "proteins", "calib_sample.fasta")
        with open(sample) as f, open(fasta, "w") as g:
            g.write("".join(">" + r for r in f.read().split(">")[1:9]))
        args = ("--method", "gptq", "--precision", "int4", "--calibration-data", fasta)  # per-channel (COMMON)
        ref = None
        for n, threads in ((1, "1"), (2, "1"), (3, "1"), (1, "2")):
            out = path(f"gptq_n{n}_t{threads}.h5")
            quantize(n, out, *args, "--threads", threads)
            got = datasets(out)
            if ref is None:
                ref = got
                with h5py.File(out, "r") as f:
                    q = f["tensors/esm.encoder.layer.0.attention.self.query.weight"]
                    self.assertEqual(attr_str(q.attrs["method"]), "gptq")
                continue
            self.assertEqual(sorted(got), sorted(ref), f"-n {n} --threads {threads}")
            for k in ref:
                self.assertEqual(got[k], ref[k], f"gptq -n {n} --threads {threads}: dataset {k}")
        # GPTQ moves codes away from plain rounding (the error feedback)
        quantize(1, path("rtn_i4.h5"), "--precision", "int4")
        rtn = datasets(path("rtn_i4.h5"))
        qw = [k for k in ref if k.endswith("/qweight")]
        self.assertTrue(qw)
        self.assertTrue(any(ref[k] != rtn[k] for k in qw), "GPTQ codes equal RTN's everywhere")

    def test_mixed_recipe_any_rank_and_thread_count(self):
        # a recipe file: each Linear its own bits, groups and symmetry, some
        # kept in fp16; RTN and GPTQ give the same datasets and /recipe table
        # for 1, 2, 3 ranks and 2 threads (GPTQ's group scales come from the
        # weights as the error feedback left them: the last bits of the factor
        # matter, so the factorisation runs on one BLAS thread)
        recipes = {}
        for method, scales in (("rtn", {"group_size": 64}), ("gptq", {"group_size": 64})):
            recipes[method] = path(f"mixed_{method}.json")
            with open(recipes[method], "w") as f:
                json.dump({"rules": [{"layers": "0-1", "linears": ["q", "k"], "precision": "fp16"},
                                     dict({"linears": "fc1", "precision": "int4", "symmetric": False}, **scales),
                                     {"layers": "2-5", "linears": ["v", "o"], "precision": "int4"}]}, f)
        fasta = path("mixed8.fasta")
        sample = os.path.join(os.path.dirname(__file__), "..", "..", "data", "proteins", "calib_sample.fasta")
        with open(sample) as f, open(fasta, "w") as g:
            g.write("".join(">" + r for r in f.read().split(">")[1:9]))

        def table(fn):
            with h5py.File(fn, "r") as f:
                return {k: attr_str(v) for k, v in f["recipe"].attrs.items()}
        for method, args in (("rtn", ()), ("gptq", ("--method", "gptq", "--calibration-data", fasta))):
            ref = ref_table = None
            for n, threads in ((1, "1"), (2, "1"), (3, "1"), (1, "2")):
                out = path(f"mixed_{method}_n{n}_t{threads}.h5")
                quantize(n, out, "--recipe", recipes[method], *args, "--threads", threads)
                got, got_table = datasets(out), table(out)
                if ref is None:
                    ref, ref_table = got, got_table
                    fc1 = ref_table["esm.encoder.layer.3.intermediate.dense.weight"]
                    self.assertEqual(fc1, f"int4 group 64 asymmetric {method}")
                    self.assertEqual(ref_table["esm.encoder.layer.1.attention.self.key.weight"], "fp16")
                    self.assertEqual(ref_table["esm.encoder.layer.4.attention.output.dense.weight"],
                                     f"int4 channel symmetric {method}")
                    continue
                self.assertEqual(got_table, ref_table, f"{method} -n {n} --threads {threads}: /recipe")
                self.assertEqual(sorted(got), sorted(ref), f"{method} -n {n} --threads {threads}")
                for k in ref:
                    self.assertEqual(got[k], ref[k], f"{method} -n {n} --threads {threads}: dataset {k}")

    def test_layout_independent_of_arrival_order(self):
        # every quantized dataset gets its file space in plan order when it is
        # created, so the codes sit at the same offsets for any rank count
        offs = []
        for n in (1, 3):
            out = path(f"layout_n{n}.h5")
            quantize(n, out, "--threads", "1", env=SMALL_CHUNKS)
            with h5py.File(out, "r") as f:
                offs.append({name: f["tensors"][name]["qweight"].id.get_offset()
                             for name in f["tensors"] if "qweight" in f["tensors"][name]})
        self.assertGreater(len(offs[0]), 30)
        self.assertEqual(offs[0], offs[1])

    def test_codes_match_numpy_reference(self):
        out = path("ref_n3.h5")
        quantize(3, out)
        w = stref.read_safetensors(MODEL)
        with h5py.File(out, "r") as f:
            for name in ("esm.encoder.layer.0.intermediate.dense.weight", "esm.encoder.layer.5.output.dense.weight"):
                q, scale, _ = stref.quantize(w[name], 8, True, "channel")
                g = f["tensors/" + name]
                np.testing.assert_array_equal(g["qweight"][()], q, err_msg=name)
                np.testing.assert_array_equal(g["scale"][()].reshape(-1), scale.astype(np.float32).reshape(-1))

    def test_many_units_per_rank(self):
        # 1280x320 fp32 = 1.6 MB per fc1 tensor, 64 kB units: >= 25 units each,
        # so four ranks all get work and results arrive interleaved.
        p = quantize(4, path("units.h5"), "--verbose")
        m = re.search(r"(\d+) units over 4 ranks", p.stderr)
        self.assertIsNotNone(m, p.stderr)
        self.assertGreaterEqual(int(m.group(1)), 6 * 2 * 25)


class Failures(unittest.TestCase):
    def assert_no_output(self, out):
        # a failure that may pass (I/O here) keeps a journal that holds a
        # unit, and the .partial whose codes it names, for a --resume
        self.assertFalse(os.path.exists(out), out)
        self.assert_partial_follows_journal(out)

    def test_failing_worker_stops_everyone(self):
        seen_worker = False
        for unit in (0, 1, 2, 3, 40, 41):
            out = path(f"fail_{unit}.h5")
            t0 = time.time()
            p = quantize(3, out, env={"PQ_TEST_FAIL_UNIT": str(unit)}, check=False)
            self.assertLess(time.time() - t0, 60)
            self.assertEqual(p.returncode, 3, p.stderr)  # I/O error class
            lines = proteus_lines(p.stderr)
            self.assertEqual(len(lines), 1, p.stderr)
            m = re.match(r"proteus: I/O error: rank (\d), unit (\d+) \(tensor '([^']+)' rows", lines[0])
            self.assertIsNotNone(m, lines[0])
            self.assertEqual(int(m.group(2)), unit)
            self.assertIn("injected", lines[0])
            seen_worker |= m.group(1) != "0"
            self.assert_no_output(out)
        self.assertTrue(seen_worker, "no injected failure landed on a worker rank")

    def test_failure_in_a_threaded_batch(self):
        # ranks with several threads run their chunks and units a batch at a
        # time, one item per thread: a failing unit or chunk in a batch, on
        # rank 0 or a worker, still stops the run with one line naming it,
        # and no output
        def run(n, env, tag):
            out = path(f"fail_batch_{n}_{tag}.h5")
            p = quantize(n, out, "--threads", "3" if n < 2 else "2", env=env, check=False)
            self.assertEqual(p.returncode, 3, p.stderr)  # I/O error class
            lines = proteus_lines(p.stderr)
            self.assertEqual(len(lines), 1, p.stderr)
            self.assert_no_output(out)
            return lines[0]
        unit = r"proteus: I/O error: rank (\d), unit (\d+) \(tensor '[^']+' rows \d+\.\.\d+\): injected"
        for n in (0, 1):
            self.assertRegex(run(n, {"PQ_TEST_FAIL_UNIT": "5"}, "u"), unit.replace(r"(\d), unit (\d+)", "0, unit 5"))
            self.assertRegex(run(n, {"PQ_TEST_FAIL_HASH": "0", **SMALL_CHUNKS}, "h"),
                             r"^proteus: I/O error: rank 0: hashing the source, chunk \d+: injected")
        self.assertRegex(run(2, {"PQ_TEST_FAIL_HASH": "1", **SMALL_CHUNKS}, "h1"),
                         r"^proteus: I/O error: rank 1: hashing the source, chunk \d+: injected")
        ranks = set()
        for u in (0, 240, 480):
            m = re.match(unit, run(2, {"PQ_TEST_FAIL_UNIT": str(u), **SMALL_CHUNKS}, f"u{u}"))
            self.assertIsNotNone(m)
            self.assertEqual(int(m.group(2)), u)
            ranks.add(m.group(1))
        self.assertIn("1", ranks, "no injected failure landed on the worker")

    def test_nan_weight_names_tensor_and_row(self):
        w = stref.read_safetensors(MODEL)
        name = "esm.encoder.layer.3.attention.self.value.weight"
        w[name][17, 5] = np.nan
        bad = path("nan.safetensors")
        stref.write_safetensors(bad, w)
        out = path("nan.h5")
        cmd = [MPIEXEC, "-n", "3", "--oversubscribe", PROTEUS, "quantize", "--model", bad, "--out", out,
               *COMMON]
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
        self.assertEqual(p.returncode, 5, p.stderr)  # quantization error class
        lines = proteus_lines(p.stderr)
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn(name, lines[0])
        self.assertIn("17", lines[0])
        self.assertRegex(lines[0], r"rank \d, unit \d+")
        self.assert_no_output(out)

    def test_failing_hasher_stops_everyone(self):
        # a rank that fails hashing its source chunks fails the run, rank 0 too
        for rank in (2, 0):
            out = path(f"fail_hash_{rank}.h5")
            p = quantize(3, out, env={"PQ_TEST_FAIL_HASH": str(rank), **SMALL_CHUNKS}, check=False)
            self.assertEqual(p.returncode, 3, p.stderr)  # I/O error class
            lines = proteus_lines(p.stderr)
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertRegex(lines[0], rf"^proteus: I/O error: rank {rank}: hashing the source, chunk \d+: injected")
            self.assert_no_output(out)

    def test_killed_rank_does_not_hang(self):
        out = path("kill.h5")
        t0 = time.time()
        p = quantize(3, out, env={"PQ_TEST_KILL_RANK": "1", **SMALL_CHUNKS}, check=False, timeout=90)
        self.assertLess(time.time() - t0, 60)
        self.assertNotEqual(p.returncode, 0)
        self.assertFalse(os.path.exists(out))
        self.assert_partial_follows_journal(out)

    def assert_partial_follows_journal(self, out):
        """After rank 0 is gone: its .partial is left only beside a journal
        that holds a unit (whose record names its codes in the .partial, for
        a --resume: test_resume.py); otherwise rank 0 or its watcher removed
        it. Both are then removed, so that the next run starts afresh."""
        j = out + ".journal"
        units = os.path.exists(j) and any(r[1] == 1 and r[4] for r in read_journal(j)[1])
        if units:
            self.assertTrue(os.path.exists(out + ".partial"), "a journal naming codes, without its .partial")
        else:
            self.assert_gone(out + ".partial")
        for f in (j, out + ".partial"):
            if os.path.exists(f):
                os.remove(f)

    def assert_gone(self, fn, within=5.0):
        t0 = time.time()
        while os.path.exists(fn) and time.time() - t0 < within:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(fn), fn)

    def test_sigkilled_rank0_leaves_nothing(self):
        # SIGKILL runs no code in rank 0 (nor does Open MPI's own abort when
        # a peer dies): the watcher forked before MPI_Init removes the file,
        # unless the journal holds a unit (it then names codes in it)
        out = path("sigkill.h5")
        for n in (0, 2):
            cmd = [PROTEUS, "quantize", "--model", MODEL, "--out", out, *COMMON]
            if n:
                cmd = [MPIEXEC, "-n", str(n), "--oversubscribe"] + cmd
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=dict(ENV, PQ_TEST_SLOW_RANK="0"))
            t0 = time.time()
            while not os.path.exists(out + ".partial") and time.time() - t0 < 30:
                time.sleep(0.02)
            self.assertTrue(os.path.exists(out + ".partial"), "the run never created its .partial")
            os.kill(p.pid if not n else rank0_of(p.pid), 9)
            p.wait(timeout=60)
            self.assertFalse(os.path.exists(out))
            self.assert_partial_follows_journal(out)

    def test_codes_claimed_in_file_without_layout(self):
        # a rank that says its codes are in the file although rank 0 never
        # told it where: a protocol error naming the rank, no output
        out = path("fake_placed.h5")
        p = quantize(2, out, env={"PQ_TEST_REMOTE_RANKS": "1", "PQ_TEST_FAKE_PLACED": "1", **SMALL_CHUNKS},
                     check=False, timeout=90)
        self.assertEqual(p.returncode, 10, p.stderr)  # protocol error
        lines = proteus_lines(p.stderr)
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("UnitResult message from rank 1", lines[0])
        self.assertIn("no output layout", lines[0])
        self.assert_no_output(out)

    def test_unconnected_launcher_tasks(self):
        # a launcher that started 3 tasks MPI does not connect (srun without
        # an MPI plugin, with an MPI that then runs singletons): stop, do not
        # run the job three times into one file. Task 0 prints, task 2 is silent.
        for procid, lines in (("0", 1), ("2", 0)):
            out = path(f"unconnected_{procid}.h5")
            p = quantize(0, out, env={"SLURM_STEP_NUM_TASKS": "3", "SLURM_PROCID": procid}, check=False)
            self.assertEqual(p.returncode, 9, p.stderr)
            errs = proteus_lines(p.stderr)
            self.assertEqual(len(errs), lines, p.stderr)
            if lines:
                self.assertIn("started 3 tasks (SLURM_STEP_NUM_TASKS)", errs[0])
                self.assertIn("srun --mpi=pmix", errs[0])
            self.assert_no_output(out)

    def test_gptq_bad_inputs(self):
        # one scale per tensor cannot follow GPTQ's updates: a config error;
        # unreadable calibration data: a calibration/I-O error; no file either way
        out = path("gptq_bad.h5")
        p = quantize(1, out, "--method", "gptq", "--per-tensor", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("per-channel or group", p.stderr)
        p = quantize(2, out, "--method", "gptq", "--calibration-data", path("missing.fasta"), check=False)
        self.assertIn(p.returncode, (3, 6), p.stderr)
        self.assertIn("missing.fasta", p.stderr)
        self.assertFalse(os.path.exists(out) or os.path.exists(out + ".partial"))
        # fewer calibration tokens than a site's columns: a warning naming the site
        one = path("gptq1.fasta")
        sample = os.path.join(os.path.dirname(__file__), "..", "..", "data", "proteins", "calib_sample.fasta")
        with open(sample) as f, open(one, "w") as g:
            g.write(">" + f.read().split(">")[1])
        p = quantize(2, out, "--method", "gptq", "--calibration-data", one)
        self.assertRegex(p.stderr, r"layer 0 fc2 input saw \d+ calibration tokens, fewer than its 1280 columns")
        self.assertTrue(os.path.exists(out))

    def test_plan_mismatch(self):
        out = path("mismatch.h5")
        p = quantize(2, out, env={"PQ_TEST_PLAN_SALT": "1"}, check=False)
        self.assertEqual(p.returncode, 9, p.stderr)
        lines = proteus_lines(p.stderr)
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("plan mismatch", lines[0])
        self.assertIn("rank 1", lines[0])
        self.assert_no_output(out)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Monitor(unittest.TestCase):
    def watch(self, n, out, env=None):
        ep = f"tcp://127.0.0.1:{free_port()}"
        mon = subprocess.Popen([PROTEUS, "monitor", ep, "--json", "--timeout", "60"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        p = quantize(n, out, "--monitor", ep, "--monitor-wait", "10", env=env, check=False)
        mout, merr = mon.communicate(timeout=70)
        events = [json.loads(ln) for ln in mout.splitlines() if ln.strip()]
        return p, mon.returncode, events, merr

    def test_events_of_a_real_run(self):
        p, rc, ev, merr = self.watch(2, path("mon.h5"), env=SMALL_CHUNKS)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(rc, 0, merr)
        kinds = [e["kind"] for e in ev]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-1], "finished")
        units = [e for e in ev if e["kind"] == "unit"]
        total = ev[0]["units_total"]
        self.assertGreater(total, 10)
        self.assertEqual(len(units), total)
        self.assertEqual(sorted(e["unit_id"] for e in units), list(range(total)))
        self.assertEqual({e["rank"] for e in units}, {0, 1})
        self.assertEqual([e["units_done"] for e in units], list(range(1, total + 1)))
        self.assertTrue(all(e["sqnr_db"] > 20 for e in units if "sqnr_db" in e))
        self.assertTrue(all(e["tensor"].startswith("esm.encoder.layer.") for e in units))
        self.assertTrue(ev[-1]["finished"])
        self.assertEqual(ev[-1]["n_ranks"], 2)

    def test_error_event(self):
        p, rc, ev, merr = self.watch(2, path("mon_err.h5"), env={"PQ_TEST_FAIL_UNIT": "3"})
        self.assertEqual(p.returncode, 3)
        self.assertEqual(rc, 3, merr)
        self.assertEqual(ev[-1]["kind"], "error")
        self.assertIn("unit 3", ev[-1]["error"])

    def test_remote_bind_needs_flag(self):
        p = quantize(0, path("remote.h5"), "--monitor", "tcp://0.0.0.0:5999", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--monitor-allow-remote", p.stderr)
        self.assertFalse(os.path.exists(path("remote.h5")))

    def test_dead_monitor_never_fails_the_run(self):
        # a port that is taken: binding fails, the run goes on with a warning
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        ep = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        p = quantize(2, path("mon_taken.h5"), "--monitor", ep, "--monitor-wait", "0")
        s.close()
        self.assertEqual(len(re.findall(r"warn: monitor", p.stderr)), 1, p.stderr)
        self.assertTrue(os.path.exists(path("mon_taken.h5")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
