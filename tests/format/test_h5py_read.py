# SPDX-License-Identifier: Apache-2.0
"""test_h5py_read.py - a file written by Proteus (tests/format/write_fixture.c)
read by h5py + numpy and by scripts/proteus_h5.py: dtypes, attrs as
fixed-length strings, the Fletcher-32 filter on every dataset (and h5py's
own check of it catching a flipped code byte), raw codes and dequantized
values, all recomputed here with numpy.

Usage: test_h5py_read.py WRITE_FIXTURE_EXE PROTEUS_H5_PY
"""
import importlib.util
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


# The fixture's formulas, restated independently of write_fixture.c.
def code_c8(r, c): return (r * 31 + c * 17) % 256 - 128
def zp_c8(i): return (i * 37) % 256 - 128
def code_t8(r, c): return (r * 13 + c * 7) % 255 - 127
def code_g4(r, c): return (r * 5 + c * 3) % 16 - 8
def zp_g4(i): return i % 16 - 8
def code_c4(r, c): return (r * 3 + c) % 15 - 7


def scales(n):
    return np.array([np.float32(0.0123) * np.float32(i + 1) for i in range(n)], dtype=np.float32)


def grid(fn, rows, cols):
    return np.array([[fn(r, c) for c in range(cols)] for r in range(rows)], dtype=np.int32)


def pack4(q):
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), dtype=q.dtype)], axis=1)
    return ((q[:, 0::2] + 8) | ((q[:, 1::2] + 8) << 4)).astype(np.uint8)


def main():
    fixture, script = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("proteus_h5", script)
    ph5 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ph5)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fixture.h5")
        subprocess.run([fixture, path], check=True)
        check(not os.path.exists(path + ".partial"), "no .partial left behind")

        with h5py.File(path, "r") as f:
            a = f.attrs
            S = ph5.attr_str
            for k in ("format", "architecture", "model_name", "source_digest_tree", "source_digest_algorithm", "created_by",
                      "config_json"):
                t = h5py.h5a.open(f.id, k.encode()).get_type()
                check(isinstance(t, h5py.h5t.TypeStringID) and not t.is_variable_str(),
                      "root attr %s is a fixed-length string" % k)
                check(isinstance(a[k], bytes), "root attr %s reads as bytes (got %r)" % (k, type(a[k])))
            check(S(a["format"]) == "proteus.quantized", "format name")
            check(int(a["format_version"]) == 5, "format_version")
            check(int(a["source_hash_chunk_bytes"]) == 64 << 20, "source_hash_chunk_bytes")
            check("source_sha256" not in a and "source_sha256_tree" not in a, "no source_sha256(_tree) in version 5")
            check(S(a["source_digest_algorithm"]) == "sha256", "source_digest_algorithm")
            check(S(a["architecture"]) == "esm2_t6_8M_UR50D", "architecture")
            check(int(a["num_ranks"]) == 2, "num_ranks")
            c = f["config"].attrs
            check(int(c["num_layers"]) == 6 and int(c["embed_dim"]) == 320 and
                  int(c["attention_heads"]) == 20 and int(c["ffn_dim"]) == 1280 and
                  int(c["vocab_size"]) == 33 and int(c["head_dim"]) == 16, "config ints")
            check(c["layer_norm_eps"] == np.float32(1e-5), "layer_norm_eps")
            check(isinstance(c["token_dropout"], np.bool_) and bool(c["token_dropout"]),
                  "token_dropout reads as numpy bool True")
            check(S(f["provenance"].attrs["seed"]) == "7", "provenance str")
            every = []
            f.visititems(lambda n, o: every.append((n, o)) if isinstance(o, h5py.Dataset) else None)
            check(every and all(o.fletcher32 and o.chunks for n, o in every if o.size),
                  "every dataset chunked with Fletcher-32: %s" % [n for n, o in every if not o.fletcher32])

            v = np.array([np.float32(i - 7) * np.float32(0.37) + np.float32(i * i) *
                          np.float32(1e-3) for i in range(24)], dtype=np.float32)
            v[23] = 70000.0
            v[22] = 1e-7
            d32 = f["tensors/float32.weight/data"]
            check(d32.dtype == np.float32 and d32.shape == (4, 6), "float32 dtype/shape")
            check(np.array_equal(d32[()], v.reshape(4, 6)), "float32 values")
            d16 = f["tensors/float16.bias/data"]
            check(d16.dtype == np.float16, "float16 reads as np.float16 (got %s)" % d16.dtype)
            with np.errstate(over="ignore"):
                want16 = v.astype(np.float16)  # numpy rounds to nearest even
            check(np.array_equal(d16[()].view(np.uint16), want16.view(np.uint16)),
                  "float16 bits equal numpy's rounding")
            check(np.isinf(d16[23]) and d16[22] == np.float16(1e-7), "float16 inf/subnormal")

            cases = [
                ("q8.channel.asym", 8, "channel", False, 5, 9, code_c8, zp_c8, 0),
                ("q8.tensor.sym", 8, "tensor", True, 4, 7, code_t8, None, 0),
                ("q4.group.asym", 4, "group", False, 3, 71, code_g4, zp_g4, 32),
                ("q4.channel.sym", 4, "channel", True, 4, 10, code_c4, None, 0),
            ]
            expected = {"float32.weight": v.reshape(4, 6),
                        "float16.bias": want16.astype(np.float32)}
            for name, bits, gran, sym, rows, cols, cf, zf, gs in cases:
                g = f["tensors"][name]
                ga = g.attrs
                check(int(ga["bits"]) == bits, name + " bits")
                check(S(ga["granularity"]) == gran, name + " granularity")
                check(isinstance(ga["scheme"], bytes) and isinstance(ga["method"], bytes),
                      name + " scheme/method fixed-length strings")
                check(bool(ga["symmetric"]) == sym, name + " symmetric")
                check(int(ga["group_size"]) == gs, name + " group_size")
                check(list(ga["shape"]) == [rows, cols], name + " shape attr")
                q = grid(cf, rows, cols)
                qw = g["qweight"]
                if bits == 8:
                    check(qw.dtype == np.int8 and qw.shape == (rows, cols), name + " qweight")
                    check(np.array_equal(qw[()], q.astype(np.int8)), name + " codes")
                else:
                    check(qw.dtype == np.uint8 and qw.shape == (rows, (cols + 1) // 2),
                          name + " qweight")
                    check(np.array_equal(qw[()], pack4(q)), name + " packed codes")
                ng = (cols + gs - 1) // gs if gran == "group" else 1
                sshape = {"tensor": (1,), "channel": (rows,), "group": (rows, ng)}[gran]
                n_s = int(np.prod(sshape))
                s = scales(n_s).reshape(sshape)
                check(g["scale"].dtype == np.float32 and g["scale"].shape == sshape,
                      name + " scale dtype/shape")
                check(np.array_equal(g["scale"][()], s), name + " scale values")
                if sym:
                    check("zero_point" not in g, name + " no zero_point")
                    z = np.zeros(sshape, dtype=np.int32)
                else:
                    z = np.array([zf(i) for i in range(n_s)], dtype=np.int32).reshape(sshape)
                    check(g["zero_point"].dtype == np.int32, name + " zero_point dtype")
                    check(np.array_equal(g["zero_point"][()], z), name + " zero_point values")
                # (q - zp) * scale, element by element, in float32.
                w = np.empty((rows, cols), dtype=np.float32)
                for r in range(rows):
                    for col in range(cols):
                        idx = {"tensor": (0,), "channel": (r,), "group": (r, col // max(gs, 1))}[gran]
                        w[r, col] = np.float32(q[r, col] - z[idx]) * s[idx]
                expected[name] = w
                check(np.array_equal(ph5.codes(g), q.astype(np.int8)), name + " proteus_h5.codes")
                check(name in f["metrics"] and f["metrics"][name].attrs["sqnr_db"] == 40.5,
                      name + " metrics")

        loaded = ph5.load(path)
        check(sorted(loaded) == sorted(expected), "load() names")
        for name, want in expected.items():
            got = loaded.get(name)
            check(got is not None and got.dtype == np.float32 and got.shape == want.shape and
                  np.array_equal(got, want), "load()[%s] equals numpy's (q - zp) * scale" % name)

        out = subprocess.run([sys.executable, script, path], check=True,
                             capture_output=True, text=True).stdout
        check("q4.group.asym" in out and "int4 group asym gs=32" in out, "CLI listing")

        # One code byte flipped: h5py's own Fletcher-32 check refuses the read.
        import shutil
        bad = os.path.join(d, "flipped.h5")
        shutil.copy(path, bad)
        with h5py.File(path, "r") as f:
            ds = f["tensors/q8.channel.asym/qweight"]
            info = ds.id.get_chunk_info(0)
            check(info.size == ds.size + 4, "qweight is one chunk with its 4-byte checksum")
        with open(bad, "r+b") as fh:
            fh.seek(info.byte_offset + 3)
            b = fh.read(1)
            fh.seek(info.byte_offset + 3)
            fh.write(bytes([b[0] ^ 0x01]))
        try:
            with h5py.File(bad, "r") as f:
                f["tensors/q8.channel.asym/qweight"][()]
            check(False, "h5py refuses a flipped code byte")
        except OSError as e:
            check("Fletcher32" in str(e) or "filter" in str(e).lower() or "read" in str(e).lower(),
                  "h5py's checksum error: %s" % e)

        # A version this reader does not know, or an older one, is refused
        # with a clear message.
        for version, message in ((6, "format_version 6 is not supported"), (2, "quantize the model again")):
            with h5py.File(path, "r+") as f:
                f.attrs["format_version"] = np.int32(version)
            try:
                ph5.load(path)
                check(False, "version %d refused" % version)
            except ValueError as e:
                check(message in str(e), "version %d message: %s" % (version, e))

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all h5py checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
