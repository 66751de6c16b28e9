# SPDX-License-Identifier: Apache-2.0
"""test_corrupt.py - corrupted copies of a quantized model, tried as a new user
would: the bundled t6 model quantized to int8, then seeded copies with random
bytes flipped anywhere, cut short, or 8 random bytes written in the first
200 KB, each run through `proteus inspect` and `proteus score`. Every run must
end with 0 or one of Proteus' exit statuses (never a signal, never a hang),
and a run that exits 0 must print exactly what the clean file gives (the
damage fell in bytes the file does not use). The counts are printed.

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


def run(args, cwd):
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        return None
    return p


def normalized(p, json_path):
    """What must not change: stdout without the timing in brackets, and the
    --json values without the file name."""
    out = re.sub(r"\[[^\]]*tokens/s\]", "", p.stdout)
    js = None
    if json_path and os.path.exists(json_path):
        with open(json_path) as f:
            js = json.load(f)
        js.pop("model", None)
        os.remove(json_path)
    return out, js


def main():
    proteus, model, fasta = (os.path.abspath(a) for a in sys.argv[1:4])
    copies = int(sys.argv[4]) if len(sys.argv) > 4 else 120
    rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else SEED)
    tmp = tempfile.mkdtemp(prefix="pq_corrupt_")
    failures = []
    try:
        clean = os.path.join(tmp, "clean.h5")
        p = subprocess.run([proteus, "quantize", "--model", model, "--out", clean, "--precision", "int8"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print("quantize failed:", p.stderr)
            return 1
        data = open(clean, "rb").read()
        model_copy = os.path.join(tmp, "m.h5")

        def commands(path):
            js = os.path.join(tmp, "s.json")
            return [("inspect", [proteus, "inspect", path], None),
                    ("score", [proteus, "score", "--model", path, "--fasta", fasta, "--max-seqs", "3",
                               "--max-length", "40", "--threads", "1", "--json", js], js)]

        shutil.copy(clean, model_copy)
        want = {}
        for name, args, js in commands(model_copy):
            p = run(args, tmp)
            if p is None or p.returncode != 0:
                print("clean %s failed: %s" % (name, p and p.stderr))
                return 1
            want[name] = normalized(p, js)

        kinds = ["flip", "truncate", "overwrite8"]
        counts = {(k, c): 0 for k in kinds for c in ("error", "same")}
        statuses = {}
        for i in range(copies):
            kind = kinds[i % 3]
            b = bytearray(data)
            if kind == "flip":
                for _ in range(rng.randint(1, 8)):
                    at = rng.randrange(len(b))
                    b[at] ^= rng.randint(1, 255)
                what = "flipped bytes"
            elif kind == "truncate":
                b = b[:rng.randrange(len(b))]
                what = "cut at %d" % len(b)
            else:
                at = rng.randrange(min(200 * 1024, len(b)) - 8)
                b[at:at + 8] = bytes(rng.randrange(256) for _ in range(8))
                what = "8 bytes at %d" % at
            with open(model_copy, "wb") as f:
                f.write(b)
            for name, args, js in commands(model_copy):
                p = run(args, tmp)
                tag = "copy %d (%s, %s) %s" % (i, kind, what, name)
                if p is None:
                    failures.append(tag + ": no answer within %d s" % TIMEOUT_S)
                    continue
                if p.returncode < 0:
                    failures.append(tag + ": killed by signal %d" % -p.returncode)
                    continue
                if p.returncode == 0:
                    if normalized(p, js) != want[name]:
                        failures.append(tag + ": exit 0 with an output that differs from the clean file's")
                    else:
                        counts[(kind, "same")] += 1
                    continue
                if p.returncode not in PROTEUS_STATUSES:
                    failures.append(tag + ": exit status %d is not a Proteus status" % p.returncode)
                    continue
                lines = p.stderr.strip().splitlines()
                if not lines or not lines[-1].startswith("proteus:"):
                    failures.append(tag + ": no error line: %r" % p.stderr[-300:])
                    continue
                counts[(kind, "error")] += 1
                statuses[p.returncode] = statuses.get(p.returncode, 0) + 1
        print("%d corrupted copies x (inspect, score):" % copies)
        for k in kinds:
            print("  %-10s %3d runs: %3d clear errors, %3d exit 0 with the clean output" %
                  (k, counts[(k, "error")] + counts[(k, "same")], counts[(k, "error")], counts[(k, "same")]))
        print("  exit statuses of the errors: %s" % dict(sorted(statuses.items())))
    finally:
        shutil.rmtree(tmp, True)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
