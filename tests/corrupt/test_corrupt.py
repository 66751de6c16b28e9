# SPDX-License-Identifier: Apache-2.0
"""test_corrupt.py - corrupted copies of Proteus' HDF5 files, tried as a new
user would: the bundled t6 model quantized to int8, then seeded copies with
random bytes flipped anywhere, cut short, or 8 random bytes written in the
first 200 KB, each run through `proteus inspect` and `proteus score`; and
the same for a calibration store (`proteus calibrate --stats`). Every run
must end with 0 or one of Proteus' exit statuses (never a signal, never a
hang, and a failure says so on its last line), and a run that exits 0 must
print exactly what the clean file gives (the damage fell in bytes the file
does not use). The counts are printed.

Usage: test_corrupt.py PROTEUS MODEL.safetensors EVAL.fasta [COPIES [SEED]]
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

PROTEUS_STATUSES = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 70}  # engine/base/pq_err.h
TIMEOUT_S = 30
SEED = 20240521
KINDS = ("flip", "truncate", "overwrite8")


def run(args, cwd):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        return None


def normalized(p, json_path, path):
    """What must not change: stdout without the timing in brackets and the
    file's own name, and the --json values without the file name."""
    out = re.sub(r"\[[^\]]*tokens[^\]]*\]", "", p.stdout).replace(path, "FILE")
    js = None
    if json_path and os.path.exists(json_path):
        with open(json_path) as f:
            js = json.load(f)
        js.pop("model", None)
        os.remove(json_path)
    return out, js


def corrupt(data, kind, rng):
    b = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
        return b, "flipped bytes"
    if kind == "truncate":
        b = b[:rng.randrange(len(b))]
        return b, "cut at %d" % len(b)
    at = rng.randrange(min(200 * 1024, len(b)) - 8)
    b[at:at + 8] = bytes(rng.randrange(256) for _ in range(8))
    return b, "8 bytes at %d" % at


def campaign(title, clean, commands, copies, rng, tmp, failures):
    """Run commands(path) -> [(name, args, json_path)] on the clean file and
    on `copies` corrupted copies of it; check and count."""
    data = open(clean, "rb").read()
    copy = os.path.join(tmp, "copy" + os.path.splitext(clean)[1])
    shutil.copy(clean, copy)
    want = {}
    for name, args, js in commands(copy):
        p = run(args, tmp)
        if p is None or p.returncode != 0:
            failures.append("%s: clean %s failed: %s" % (title, name, p and p.stderr))
            return
        want[name] = normalized(p, js, copy)
    counts = {(k, c): 0 for k in KINDS for c in ("error", "same")}
    statuses = {}
    for i in range(copies):
        kind = KINDS[i % 3]
        b, what = corrupt(data, kind, rng)
        with open(copy, "wb") as f:
            f.write(b)
        for name, args, js in commands(copy):
            p = run(args, tmp)
            tag = "%s copy %d (%s, %s) %s" % (title, i, kind, what, name)
            if p is None:
                failures.append(tag + ": no answer within %d s" % TIMEOUT_S)
            elif p.returncode < 0:
                failures.append(tag + ": killed by signal %d" % -p.returncode)
            elif p.returncode == 0:
                if normalized(p, js, copy) != want[name]:
                    failures.append(tag + ": exit 0 with an output that differs from the clean file's")
                else:
                    counts[(kind, "same")] += 1
            elif p.returncode not in PROTEUS_STATUSES:
                failures.append(tag + ": exit status %d is not a Proteus status" % p.returncode)
            elif not p.stderr.strip() or not p.stderr.strip().splitlines()[-1].startswith("proteus:"):
                failures.append(tag + ": no error line: %r" % p.stderr[-300:])
            else:
                counts[(kind, "error")] += 1
                statuses[p.returncode] = statuses.get(p.returncode, 0) + 1
    print("%s: %d corrupted copies x (%s):" % (title, copies, ", ".join(n for n, _, _ in commands(copy))))
    for k in KINDS:
        print("  %-10s %3d runs: %3d clear errors, %3d exit 0 with the clean output" %
              (k, counts[(k, "error")] + counts[(k, "same")], counts[(k, "error")], counts[(k, "same")]))
    print("  exit statuses of the errors: %s" % dict(sorted(statuses.items())))


def main():
    proteus, model, fasta = (os.path.abspath(a) for a in sys.argv[1:4])
    copies = int(sys.argv[4]) if len(sys.argv) > 4 else 120
    rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else SEED)
    tmp = tempfile.mkdtemp(prefix="pq_corrupt_")
    failures = []
    try:
        qmodel = os.path.join(tmp, "clean.h5")
        p = subprocess.run([proteus, "quantize", "--model", model, "--out", qmodel, "--precision", "int8"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print("quantize failed:", p.stderr)
            return 1
        js = os.path.join(tmp, "s.json")
        campaign("model", qmodel, lambda path: [
            ("inspect", [proteus, "inspect", path], None),
            ("score", [proteus, "score", "--model", path, "--fasta", fasta, "--max-seqs", "3", "--max-length", "40",
                       "--threads", "1", "--json", js], js)], copies, rng, tmp, failures)

        # a calibration store of 4 sequences, checked by --stats
        few = os.path.join(tmp, "few.fasta")
        with open(fasta) as f, open(few, "w") as o:
            o.write("".join(re.findall(r">[^>]*", f.read())[:4]))
        store = os.path.join(tmp, "calib.h5")
        p = subprocess.run([proteus, "calibrate", "--model", model, "--calibration-data", few, "--out", store, "-q",
                            "--threads", "1"], capture_output=True, text=True)
        if p.returncode != 0:
            print("calibrate failed:", p.stderr)
            return 1
        campaign("calibration store", store, lambda path: [
            ("calibrate --stats", [proteus, "calibrate", "--stats", path], None)], copies // 2, rng, tmp, failures)
    finally:
        shutil.rmtree(tmp, True)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
