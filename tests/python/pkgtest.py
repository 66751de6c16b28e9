# SPDX-License-Identifier: Apache-2.0
"""pkgtest.py - what the Python package's tests share: the command line
(PROTEUS_BIN LIBPROTEUS MODEL CALIB_FASTA EVAL_FASTA), the package imported
from the checkout's python/ with that library, the `proteus` program,
a scratch folder, reading FASTA records and comparing two model files."""
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PROTEUS, LIBRARY, MODEL, CALIB, EVAL = (os.path.abspath(a) for a in sys.argv[1:6])
del sys.argv[1:6]
os.environ["PROTEUS_LIBRARY"] = LIBRARY
os.environ["PROTEUS_BIN"] = PROTEUS
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import path, scratch  # noqa: E402
TMP = scratch("pq_py_")

# single-node Open MPI settings (docs/CLUSTER.md)
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PMIX_MCA_psec": "native", "OMPI_MCA_pml": "ob1",
           "PMIX_MCA_gds": "hash", "HWLOC_COMPONENTS": "-pci,-linuxio",
           "HWLOC_PLUGINS_BLACKLIST": "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml"}
os.environ.update(MPI_ENV)


def run(*args, ok=True):
    p = subprocess.run([PROTEUS, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError("proteus %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr))
    return p


def fasta_records(fasta, n):
    """The first n (id, sequence) records of a FASTA file."""
    recs, rid, seq = [], None, []
    with open(fasta) as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                if rid is not None:
                    recs.append((rid, "".join(seq)))
                rid, seq = line[1:].split()[0], []
            elif line:
                seq.append(line)
    if rid is not None:
        recs.append((rid, "".join(seq)))
    return recs[:n]


def write_fasta(name, recs):
    p = path(name)
    with open(p, "w") as f:
        for rid, seq in recs:
            f.write(">%s\n%s\n" % (rid, seq))
    return p


def h5_items(fname):
    """Every dataset's bytes and every attribute of a model file, except
    /provenance (the command line and timings of the run that wrote it)."""
    import h5py
    import numpy as np
    items = {}

    def visit(name, obj):
        if name == "provenance" or name.startswith("provenance/"):
            return
        for k, v in obj.attrs.items():
            items["%s@%s" % (name, k)] = np.asarray(v).tobytes() if not isinstance(v, (str, bytes)) else v
        if isinstance(obj, h5py.Dataset):
            items[name] = (obj.dtype.str, obj.shape, obj[()].tobytes())

    with h5py.File(fname, "r") as f:
        for k, v in f.attrs.items():
            items["@" + k] = np.asarray(v).tobytes() if not isinstance(v, (str, bytes)) else v
        f.visititems(visit)
    return items


def assert_same_model(a, b, ignore_attrs=()):
    """Two model files hold the same datasets and attributes (provenance
    and the named root attributes aside)."""
    ia, ib = h5_items(a), h5_items(b)
    for k in ignore_attrs:
        ia.pop("@" + k, None)
        ib.pop("@" + k, None)
    assert ia.keys() == ib.keys(), "%s vs %s: items differ: %s" % (a, b, sorted(ia.keys() ^ ib.keys())[:10])
    diff = [k for k in ia if ia[k] != ib[k]]
    assert not diff, "%s vs %s differ in %s" % (a, b, diff[:10])
    return len(ia)
