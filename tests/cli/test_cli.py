# SPDX-License-Identifier: Apache-2.0
"""test_cli.py - `proteus synth|quantize|inspect` end to end on a synthetic
esm2_t6 model: the output read back with h5py and compared with codes computed
independently in numpy from the documented contract; bad options and bad files
give one clear line, a distinct exit status and no output file."""
import json
import os
import resource
import subprocess
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import stref  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import path, scratch  # noqa: E402

PROTEUS = os.path.abspath(sys.argv.pop(1))
TMP = scratch("pq_cli_")
LINEAR = ("attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
          "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight")


def run(*args, ok=True, **kw):
    p = subprocess.run([PROTEUS, *args], capture_output=True, text=True, **kw)
    if ok and p.returncode != 0:
        raise AssertionError(f"proteus {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def synth(name="t6.safetensors", seed=3):
    p = path(name)
    if not os.path.exists(p):
        run("synth", "--arch", "esm2_t6_8M_UR50D", "--seed", str(seed), "--out", p)
    return p


def resident(p):
    """The share of file p's pages in the page cache (mincore(2))."""
    import ctypes
    import mmap
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    n = os.path.getsize(p)
    pages = (n + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with open(p, "rb") as f:
        a = libc.mmap(None, n, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
        vec = ctypes.create_string_buffer(pages)
        rc = libc.mincore(a, n, vec)
        libc.munmap(a, n)
    if rc != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(b & 1 for b in vec.raw) / pages


def drops_pages():
    """Whether the scratch folder's file system releases a file's cached
    pages on POSIX_FADV_DONTNEED (tmpfs, for one, keeps them: they are the
    file)."""
    probe = path("probe.bin")
    with open(probe, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    with open(probe, "rb") as f:
        f.read()
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    gone = resident(probe) < 0.5
    os.remove(probe)
    if not gone:
        print("note: the scratch file system keeps cached pages on POSIX_FADV_DONTNEED (tmpfs?): "
              "residency not checked, the codes are", file=sys.stderr)
    return gone


def tensors(p):
    """{name: bytes} of every dataset under /tensors of HDF5 file p."""
    d = {}
    with h5py.File(p) as f:
        f["tensors"].visititems(lambda k, o: d.__setitem__(k, o[()].tobytes()) if isinstance(o, h5py.Dataset) else None)
    return d


def is_linear(name):
    return name.startswith("esm.encoder.layer.") and name.endswith(LINEAR)


class Synth(unittest.TestCase):
    def test_deterministic(self):
        a, b, c = path("s_a.st"), path("s_b.st"), path("s_c.st")
        run("synth", "--arch", "t6_8M", "--seed", "7", "--out", a)
        run("synth", "--arch", "t6_8M", "--seed", "7", "--out", b)
        run("synth", "--arch", "t6_8M", "--seed", "8", "--out", c)
        def data(p):
            with open(p, "rb") as f:
                return f.read()
        self.assertEqual(data(a), data(b))
        self.assertNotEqual(data(a), data(c))

    def test_names_and_shapes(self):
        t = stref.read_safetensors(synth())
        self.assertEqual(t["esm.embeddings.word_embeddings.weight"].shape, (33, 320))
        self.assertEqual(t["esm.encoder.layer.5.intermediate.dense.weight"].shape, (1280, 320))
        self.assertEqual(t["esm.encoder.layer.5.output.dense.weight"].shape, (320, 1280))
        w = t["esm.encoder.layer.0.attention.self.query.weight"]
        self.assertLess(abs(float(np.median(np.abs(w))) / 0.6745 - 0.02), 0.005)

    def test_bad_arch(self):
        p = run("synth", "--arch", "esm2_t99", "--out", path("x.st"), ok=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("esm2_t6_8M_UR50D", p.stderr)


class Quantize(unittest.TestCase):
    @staticmethod
    def expand(scale, zp, shape, gran, gs):
        r, c = shape
        if gran == "tensor":
            return np.full(shape, scale[0], np.float32), np.full(shape, zp[0], np.int32)
        if gran == "channel":
            return np.repeat(scale[:, None], c, 1), np.repeat(zp[:, None], c, 1)
        return np.repeat(scale, gs, 1)[:, :c], np.repeat(zp, gs, 1)[:, :c]

    def check(self, out, src, bits, sym, gran, gs=0):
        w_all = stref.read_safetensors(src)
        with h5py.File(out, "r") as f:
            self.assertEqual(f.attrs["format"], b"proteus.quantized")  # fixed-length: bytes
            self.assertEqual(int(f.attrs["format_version"]), 5)
            names = set(f["tensors"].keys())
            self.assertEqual(names, set(w_all))
            nq = 0
            for name in sorted(names):
                g = f["tensors"][name]
                if not is_linear(name):
                    self.assertIn("data", g, name)
                    np.testing.assert_array_equal(g["data"][()], w_all[name])
                    continue
                nq += 1
                q, scale, zp = stref.quantize(w_all[name], bits, sym, gran, gs)
                self.assertEqual(int(g.attrs["bits"]), bits)
                got = g["qweight"][()]
                if bits == 4:
                    np.testing.assert_array_equal(got, stref.pack_i4(q), name)
                else:
                    np.testing.assert_array_equal(got, q, name)
                np.testing.assert_array_equal(g["scale"][()].reshape(scale.shape), scale, name)
                if sym:
                    self.assertNotIn("zero_point", g)
                else:
                    np.testing.assert_array_equal(g["zero_point"][()].reshape(zp.shape), zp, name)
                # metrics against numpy's own dequantization (float64 sums)
                m = f["metrics"][name]
                get = lambda k: float(m.attrs[k] if k in m.attrs else m[k][()])
                w = w_all[name].astype(np.float64)
                s_full, z_full = self.expand(scale, zp, w.shape, gran, gs)
                deq = ((q.astype(np.float32) - z_full.astype(np.float32)) * s_full).astype(np.float64)
                err = ((w - deq) ** 2).sum()
                self.assertAlmostEqual(get("sqnr_db"), 10 * np.log10((w ** 2).sum() / err), places=6)
                self.assertAlmostEqual(get("max_abs_err"), float(np.abs(w - deq).max()), places=7)
            self.assertEqual(nq, 36)

    def test_default_int8_per_tensor(self):
        src = synth()
        out = path("d.h5")
        p = run("quantize", "--model", src, "--out", out)
        self.assertIn("SQNR", p.stdout)
        self.check(out, src, 8, True, "tensor")

    def test_int8_per_channel_asym(self):
        src = synth()
        out = path("c.h5")
        run("quantize", "--model", src, "--out", out, "--per-channel", "--asymmetric", "-q")
        self.check(out, src, 8, False, "channel")

    def test_int4_group_asym(self):
        src = synth()
        out = path("g.h5")
        run("quantize", "--model", src, "--out", out, "--precision", "int4", "--group-size", "64",
            "--asymmetric", "-q")
        self.check(out, src, 4, False, "group", 64)

    def test_int4_channel_sym(self):
        src = synth()
        out = path("i4.h5")
        run("quantize", "--model", src, "--out", out, "--precision", "int4", "--per-channel", "-q")
        self.check(out, src, 4, True, "channel")

    def test_threads_identical(self):
        src = synth()
        a, b = path("t1.h5"), path("t2.h5")
        run("quantize", "--model", src, "--out", a, "--per-channel", "--threads", "1", "-q")
        run("quantize", "--model", src, "--out", b, "--per-channel", "--threads", "2", "-q")
        with h5py.File(a) as fa, h5py.File(b) as fb:
            def walk(g1, g2):
                for k in g1:
                    if isinstance(g1[k], h5py.Dataset):
                        self.assertEqual(g1[k][()].tobytes(), g2[k][()].tobytes(), k)
                    else:
                        walk(g1[k], g2[k])
            walk(fa["tensors"], fb["tensors"])
            walk(fa["metrics"], fb["metrics"])

    def test_config_file_and_override(self):
        src = synth()
        cfg = path("cfg.json")
        with open(cfg, "w") as f:
            json.dump({"precision": "int4", "per_channel": True, "symmetric": True}, f)
        out = path("cfg.h5")
        run("quantize", "--model", src, "--out", out, "--config", cfg, "--precision", "int8", "-q")
        with h5py.File(out) as f:
            g = f["tensors/esm.encoder.layer.0.attention.self.query.weight"]
            self.assertEqual(int(g.attrs["bits"]), 8)          # the option wins
            self.assertEqual(g["scale"].shape, (320,))        # per_channel from the file
            self.assertEqual(json.loads(f.attrs["config_json"])["precision"], "int8")

    def test_include_exclude(self):
        src = synth()
        out = path("ie.h5")
        run("quantize", "--model", src, "--out", out, "--include", "*.intermediate.dense.weight",
            "--include", "lm_head.dense.weight", "--exclude", "esm.encoder.layer.0.*", "-q")
        with h5py.File(out) as f:
            t = f["tensors"]
            self.assertIn("qweight", t["lm_head.dense.weight"])
            self.assertIn("qweight", t["esm.encoder.layer.3.intermediate.dense.weight"])
            self.assertIn("data", t["esm.encoder.layer.0.intermediate.dense.weight"])
            self.assertIn("data", t["esm.encoder.layer.3.attention.self.query.weight"])

    def test_fp16_float_tensors(self):
        src = synth()
        out = path("f16.h5")
        run("quantize", "--model", src, "--out", out, "--float-dtype", "fp16", "-q")
        w = stref.read_safetensors(src)["esm.encoder.layer.0.LayerNorm.weight"]
        with h5py.File(out) as f:
            d = f["tensors/esm.encoder.layer.0.LayerNorm.weight/data"]
            self.assertEqual(d.dtype, np.float16)
            np.testing.assert_array_equal(d[()], w.astype(np.float16))

    def test_half_checkpoint(self):
        """An f16 checkpoint (converted a block of rows at a time) gives the
        bytes of the same values stored as fp32 (used in place), for int8
        per channel and int4 groups, over many units and 1 or 2 threads."""
        t = stref.read_safetensors(synth())
        half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in t.items()}
        full = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in half.items()}
        stref.write_safetensors(path("half16.safetensors"), half)
        stref.write_safetensors(path("half32.safetensors"), full)

        for opts in (["--per-channel"], ["--precision", "int4", "--group-size", "32"]):
            want = path("half32.h5")
            run("quantize", "--model", path("half32.safetensors"), "--out", want, "-q", *opts)
            # units of whole tensors (fc1's 1280 rows: several blocks) and of a few rows
            for threads, unit in (("1", "64M"), ("2", "64M"), ("2", "300000")):
                got = path("half16.h5")
                run("quantize", "--model", path("half16.safetensors"), "--out", got, "-q", "--threads", threads,
                    "--unit-bytes", unit, *opts)
                self.assertEqual(tensors(got), tensors(want), (opts, threads, unit))
                os.remove(got)
            os.remove(want)

    def test_drop_source(self):
        """A source that cannot stay in the page cache (forced here with
        PQ_TEST_DROP_SOURCE) leaves it chunk by chunk once read: after the
        run the kernel holds (almost) none of its pages (mincore), and the
        codes are those of a run that keeps it."""
        seen = drops_pages()
        src = synth()
        keep, drop = path("keep.h5"), path("drop.h5")
        env = dict(os.environ, PQ_TEST_HASH_CHUNK_BYTES="1048576")
        run("quantize", "--model", src, "--out", keep, "-q", "--per-channel", env=env)
        with open(src, "rb") as f:
            f.read()  # every page cached
        if seen:
            self.assertGreater(resident(src), 0.9)
        env["PQ_TEST_DROP_SOURCE"] = "1"
        for threads in ("1", "2"):
            run("quantize", "--model", src, "--out", drop, "-q", "--per-channel", "--threads", threads, env=env)
            if seen:
                self.assertLess(resident(src), 0.05, threads)
            self.assertEqual(tensors(drop), tensors(keep), threads)
            os.remove(drop)
            with open(src, "rb") as f:
                f.read()

    def test_write_behind(self):
        """An output too large for the page cache (forced here with a window
        of 64 KiB) has its codes written behind and released: after the run
        the kernel holds few of the file's pages (mincore), and its datasets
        are those of a run that keeps it cached (several ranks: test_mpi)."""
        seen = drops_pages()
        src = synth()
        keep, got = path("wb_keep.h5"), path("wb.h5")
        run("quantize", "--model", src, "--out", keep, "-q", "--per-channel")
        if seen:
            self.assertGreater(resident(keep), 0.9)
        run("quantize", "--model", src, "--out", got, "-q", "--per-channel",
            env=dict(os.environ, PQ_TEST_WRITE_BEHIND="65536"))
        if seen:
            self.assertLess(resident(got), 0.5)
        self.assertEqual(tensors(got), tensors(keep))

    def test_inspect(self):
        src = synth()
        out = path("ins.h5")
        run("quantize", "--model", src, "--out", out, "-q")
        p = run("inspect", src)
        self.assertIn("esm2_t6_8M_UR50D", p.stdout)
        p = run("inspect", out)
        self.assertIn("int8 tensor sym", p.stdout)
        self.assertIn("esm.encoder.layer.5.output.dense.weight", p.stdout)


class BadInput(unittest.TestCase):
    def expect(self, args, code, needle, out=None, **kw):
        p = run(*args, ok=False, **kw)
        self.assertEqual(p.returncode, code, p.stderr)
        self.assertIn(needle, p.stderr)
        # one error line (plain progress lines may precede it when stderr is a log)
        errs = [l for l in p.stderr.splitlines() if l.startswith("proteus")]
        self.assertEqual(len(errs), 1, p.stderr)
        if out:
            self.assertFalse(os.path.exists(out), out)
            self.assertFalse(os.path.exists(out + ".partial"), out)

    def test_options(self):
        src, out = synth(), path("bad.h5")
        self.expect(["quantize", "--model", src, "--out", out, "--frobnicate"], 2, "--frobnicate", out)
        self.expect(["quantize", "--model", src, "--out", out, "--precision", "int3"], 2, "int8, int4", out)
        self.expect(["quantize", "--out", out], 2, "--model", out)
        self.expect(["quantize", "--model", src, "--out", out, "--group-size", "33"], 2, "group_size", out)
        self.expect(["quantize", "--model", src, "--out", out, "--group-size", "64", "--per-channel"],
                    2, "exclusive", out)

    def test_config_errors(self):
        src, out = synth(), path("bad.h5")
        cfg = path("bad.json")
        with open(cfg, "w") as f:
            json.dump({"precision": "int8", "turbo": True}, f)
        self.expect(["quantize", "--model", src, "--out", out, "--config", cfg], 2, "'turbo'", out)
        with open(cfg, "w") as f:
            json.dump({"symmetric": "maybe"}, f)
        self.expect(["quantize", "--model", src, "--out", out, "--config", cfg], 2, "symmetric", out)
        with open(cfg, "w") as f:
            f.write("{ not json")
        self.expect(["quantize", "--model", src, "--out", out, "--config", cfg], 2, "bad.json", out)

    def test_hardware(self):
        src, out = synth(), path("bad.h5")
        self.expect(["quantize", "--model", src, "--out", out, "--hardware-target", "cuda"], 7,
                    "available", out)
        # avx512 (the AVX-512 VNNI GEMM) is refused, listing what is available,
        # only where the CPU lacks what it needs; elsewhere it quantizes to the
        # same codes as the reference kernels
        avx512 = ["quantize", "--model", src, "--out", out, "--hardware-target", "avx512"]
        with open("/proc/cpuinfo") as f:
            flags = set(next((l for l in f if l.startswith("flags")), "").split())
        if not {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags:
            self.expect(avx512, 7, "available", out)
            return
        ref = path("hw_ref.h5")
        run(*avx512)
        run("quantize", "--model", src, "--out", ref, "--hardware-target", "ref")
        with h5py.File(out, "r") as a, h5py.File(ref, "r") as b:
            for name in a["tensors"]:
                for ds in ("qweight", "scale"):
                    if ds in a["tensors"][name]:
                        np.testing.assert_array_equal(a["tensors"][name][ds][()], b["tensors"][name][ds][()])
        os.remove(out)
        os.remove(ref)

    def test_missing_and_corrupt_model(self):
        out = path("bad.h5")
        self.expect(["quantize", "--model", path("nope.safetensors"), "--out", out], 3, "nope", out)
        with open(synth(), "rb") as f:
            raw = f.read()
        trunc = path("trunc.safetensors")
        with open(trunc, "wb") as f:
            f.write(raw[: len(raw) // 2])
        self.expect(["quantize", "--model", trunc, "--out", out], 4, "trunc.safetensors", out)

    def test_file_size_limit(self):
        # a file size limit (ulimit -f) smaller than the output: one I/O
        # error naming the file and the reason, not death by SIGXFSZ, and
        # nothing left behind
        src, out = synth(), path("limited.h5")
        limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        self.expect(["quantize", "--model", src, "--out", out], 3, "File too large", out, preexec_fn=limit)
        self.expect(["quantize", "--model", src, "--out", out], 3, out + ".partial", out, preexec_fn=limit)

    def test_out_is_an_input(self):
        # --out naming the checkpoint (under another spelling too) or the
        # calibration data would replace an input: refused, input untouched
        src = path("keep.safetensors")
        with open(synth(), "rb") as f, open(src, "wb") as g:
            g.write(f.read())
        before = open(src, "rb").read()
        other = os.path.join(TMP, ".", "keep.safetensors")
        for args in (["quantize", "--model", src, "--out", other],
                     ["calibrate", "--model", src, "--calibration-data", src, "--out", src],
                     ["embed", "--model", src, "--fasta", src, "--out", other]):
            p = run(*args, ok=False)
            self.assertEqual(p.returncode, 2, p.stderr)
            errs = [l for l in p.stderr.splitlines() if l.startswith("proteus")]
            self.assertEqual(len(errs), 1, p.stderr)
            self.assertIn("is the input file", errs[0])
            self.assertEqual(open(src, "rb").read(), before, args[0])
            self.assertFalse(os.path.exists(src + ".partial"))
        missing = os.path.join(TMP, "no_such_dir", "x.h5")
        for args in (["quantize", "--model", src, "--out", missing],
                     ["calibrate", "--model", src, "--calibration-data", src, "--out", missing],
                     ["embed", "--model", src, "--fasta", src, "--out", missing]):
            # refused before any work (calibrate would otherwise run the model first)
            self.expect(args, 3, "cannot create files in " + os.path.dirname(missing))
        os.makedirs(path("outdir"), exist_ok=True)
        self.expect(["quantize", "--model", src, "--out", path("outdir")], 2, "is a directory")
        fasta = path("in.fasta")
        with open(fasta, "w") as f:
            f.write(">a\nMKV\n")
        p = run("quantize", "--model", src, "--out", fasta, "--scheme", "static", "--calibration-data", fasta,
                ok=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"the input file {fasta}", p.stderr)
        self.assertEqual(open(fasta).read(), ">a\nMKV\n")

    def test_nan_policy(self):
        t = stref.read_safetensors(synth())
        name = "esm.encoder.layer.2.attention.self.value.weight"
        t[name][17, 5] = np.nan
        src = path("nan.safetensors")
        stref.write_safetensors(src, t)
        out = path("nan.h5")
        self.expect(["quantize", "--model", src, "--out", out], 5, name, out)
        p = run("quantize", "--model", src, "--out", out, ok=False)
        self.assertIn("row 17", p.stderr)
        run("quantize", "--model", src, "--out", out, "--nan-policy", "keep", "-q")
        with h5py.File(out) as f:
            self.assertIn("data", f["tensors"][name])
            self.assertIn("qweight", f["tensors/esm.encoder.layer.2.attention.self.key.weight"])
        os.unlink(out)
        run("quantize", "--model", src, "--out", out, "--nan-policy", "zero", "--per-channel", "-q")
        with h5py.File(out) as f:
            g = f["tensors"][name]
            self.assertEqual(int(g["qweight"][17, 5]), 0)
            clean = t[name].copy()
            clean[17, 5] = 0
            q, _, _ = stref.quantize(clean, 8, True, "channel")
            np.testing.assert_array_equal(g["qweight"][()], q)

    def test_inconsistent_checkpoint(self):
        t = stref.read_safetensors(synth())
        t["esm.encoder.layer.1.intermediate.dense.weight"] = np.zeros((1000, 320), np.float32)
        src = path("shape.safetensors")
        stref.write_safetensors(src, t)
        out = path("shape.h5")
        self.expect(["quantize", "--model", src, "--out", out], 4,
                    "esm.encoder.layer.1.intermediate.dense.weight", out)


if __name__ == "__main__":
    r = unittest.main(exit=False, verbosity=2).result
    n = r.testsRun
    bad = len(r.failures) + len(r.errors)
    print(f"{n - bad} passed, {bad} failed")
    sys.exit(1 if bad else 0)
