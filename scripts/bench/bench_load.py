#!/usr/bin/env python3
"""bench_load.py - the CPU cost of loading a Proteus HDF5 model: `embed` of
one 5-residue sequence (so that the load is the run) by one or more builds,
interleaved round by round, with the model's pages in the page cache (warm:
the file read first) or not (cold: its pages dropped with
posix_fadvise(POSIX_FADV_DONTNEED), other processes' caches untouched), its
checksums verified or not (--no-verify-checksums).

    scripts/bench/bench_load.py MODEL.h5 NAME=PROTEUS[:ARG,ARG...] ... [--rounds N]
        [--modes warm-v,warm-nv,cold-v,cold-nv]

e.g. `old=A/proteus new=B/proteus new1=B/proteus:--threads,1`. Prints every
run and, per mode and build, the medians of wall, user and system CPU time
(getrusage of the child), the bytes it read from disk (block input) and
its peak RSS, then the file's bytes per CPU-second and what a machine with
two idle cores would load per second if both were busy throughout (bytes /
(CPU / 2)). Each build's embeddings are compared with the first build's
(h5py, every dataset byte for byte)."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def embeddings_equal(a, b):
    import h5py
    import numpy as np
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        return all(n in fb and np.array_equal(fa[n][()], fb[n][()]) for n in names)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("builds", nargs="+", help="NAME=PROTEUS[:ARG,ARG...]")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="warm-v,warm-nv,cold-v,cold-nv")
    o = ap.parse_args()
    builds = []
    for b in o.builds:
        name, rest = b.split("=", 1)
        exe, _, args = rest.partition(":")
        builds.append((name, os.path.abspath(exe), [a for a in args.split(",") if a]))
    tmp = tempfile.mkdtemp(prefix="pq_load_")
    fasta = os.path.join(tmp, "one.fasta")
    with open(fasta, "w") as f:
        f.write(">s1\nMKTAY\n")
    size = os.path.getsize(o.model)
    res = {}
    for r in range(o.rounds):
        for mode in o.modes.split(","):
            for name, exe, args in builds:
                if mode.startswith("cold"):
                    fd = os.open(o.model, os.O_RDONLY)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    os.close(fd)
                else:
                    with open(o.model, "rb") as f:
                        while f.read(16 << 20):
                            pass
                out = os.path.join(tmp, name + ".h5")
                cmd = [exe, "embed", "--model", o.model, "--fasta", fasta, "--out", out] + args
                if mode.endswith("-nv"):
                    cmd.append("--no-verify-checksums")
                t0 = time.monotonic()
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                _, status, ru = os.wait4(p.pid, 0)
                wall = time.monotonic() - t0
                err = p.stderr.read().decode()
                if status:
                    sys.exit("%s %s failed: %s" % (name, mode, err[-500:]))
                row = (wall, ru.ru_utime, ru.ru_stime, ru.ru_inblock * 512 / 1e9, ru.ru_maxrss / 1024)
                res.setdefault((mode, name), []).append(row)
                print("%d %-8s %-8s wall %6.2f s  user %5.2f s  sys %5.2f s  read %5.2f GB  RSS %5.0f MiB" %
                      ((r, mode, name) + row), flush=True)
    print("medians (%s, %.2f GB):" % (o.model, size / 1e9))
    for (mode, name), rows in sorted(res.items()):
        med = [statistics.median(x[i] for x in rows) for i in range(5)]
        cpu = statistics.median(x[1] + x[2] for x in rows)
        print("%-8s %-8s n=%d wall %6.2f  user %5.2f  sys %5.2f  CPU %5.2f s  read %5.2f GB  RSS %5.0f MiB | "
              "%.2f GB per CPU-s, 2 idle cores %.2f GB/s" %
              ((mode, name, len(rows)) + tuple(med[:3]) + (cpu,) + tuple(med[3:]) + (size / 1e9 / cpu,
                                                                                    2 * size / 1e9 / cpu)))
    first = os.path.join(tmp, builds[0][0] + ".h5")
    for name, _, _ in builds[1:]:
        same = embeddings_equal(first, os.path.join(tmp, name + ".h5"))
        print("embeddings %s vs %s: %s" % (builds[0][0], name, "identical" if same else "DIFFERENT"))


if __name__ == "__main__":
    main()
