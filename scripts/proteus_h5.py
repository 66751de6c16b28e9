# SPDX-License-Identifier: Apache-2.0
"""proteus_h5.py - read a Proteus quantized model (docs/FORMAT.md, version 3)
with h5py + numpy only, no Proteus needed. h5py verifies each dataset's
Fletcher-32 checksum as it reads (OSError on a mismatch).

    import proteus_h5
    weights = proteus_h5.load("model.h5")        # name -> float32 ndarray

    /usr/bin/python3 scripts/proteus_h5.py model.h5   # list the tensors
"""
import sys

import h5py
import numpy as np

FORMAT_NAME = "proteus.quantized"
FORMAT_VERSION = 5      # 3: fixed-length strings, checksums (1 and 2 are refused); 4: the /recipe table; 5: source_digest_algorithm
FORMAT_VERSION_MIN = 3


def attr_str(v):
    """A string attribute as str: Proteus writes fixed-length UTF-8 strings,
    which h5py returns as bytes."""
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def check_format(f):
    """Raise ValueError unless f (an open h5py.File) is a version-3, -4 or -5
    model (4 adds the /recipe table, 5 names the source digest's algorithm;
    the tensors read the same)."""
    version = int(f.attrs["format_version"]) if "format_version" in f.attrs else None
    if version is not None and version < FORMAT_VERSION_MIN:
        raise ValueError("%s: format_version %d was written by an older Proteus; quantize the model "
                         "again" % (f.filename, version))
    name = attr_str(f.attrs.get("format", b""))
    if name != FORMAT_NAME:
        raise ValueError("%s: format is %r, expected %r" % (f.filename, name, FORMAT_NAME))
    if version is None or not FORMAT_VERSION_MIN <= version <= FORMAT_VERSION:
        raise ValueError("%s: format_version %s is not supported (this reader reads "
                         "versions %d to %d)" % (f.filename, version, FORMAT_VERSION_MIN, FORMAT_VERSION))


def unpack_int4(packed, cols):
    """uint8 [rows, ceil(cols/2)] -> int8 codes [rows, cols]: the low nibble is
    the even column, the high nibble the odd one, both offset by 8."""
    packed = np.asarray(packed, dtype=np.uint8)
    lo = (packed & 0x0F).astype(np.int8) - 8
    hi = (packed >> 4).astype(np.int8) - 8
    q = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    q[:, 0::2] = lo
    q[:, 1::2] = hi
    return q[:, :cols]


def codes(group):
    """The integer codes of a quantized tensor group as int8 [out, in]."""
    out, cols = (int(x) for x in group.attrs["shape"])
    bits = int(group.attrs["bits"])
    raw = group["qweight"][()]
    if bits == 8:
        q = raw.astype(np.int8)
    elif bits == 4:
        q = unpack_int4(raw, cols)
    else:
        raise ValueError("%s: bits = %d" % (group.name, bits))
    if q.shape != (out, cols):
        raise ValueError("%s: codes shape %s, attrs say %s" % (group.name, q.shape, (out, cols)))
    return q


def _per_element(group, values, cols):
    """Broadcast scale- or zero_point-shaped values to [out, in]."""
    gran = attr_str(group.attrs["granularity"])
    if gran == "tensor":
        return values.reshape(1, 1)
    if gran == "channel":
        return values.reshape(-1, 1)
    if gran == "group":
        gs = int(group.attrs["group_size"])
        return np.repeat(values, gs, axis=1)[:, :cols]
    raise ValueError("%s: granularity %r" % (group.name, gran))


def dequantize(group):
    """A /tensors/<name> group as float32: data as stored (widened from
    float16), or w = (q - zero_point) * scale in float32."""
    if "data" in group:
        return group["data"][()].astype(np.float32)
    q = codes(group)
    cols = q.shape[1]
    scale = _per_element(group, group["scale"][()].astype(np.float32), cols)
    if "zero_point" in group:
        zp = _per_element(group, group["zero_point"][()].astype(np.int32), cols)
    else:
        zp = np.int32(0)
    # q - zp is exact in int32 and in float32 (|q - zp| <= 255); one fp32 product.
    return (q.astype(np.int32) - zp).astype(np.float32) * scale


def load(path):
    """Every tensor of the model at path, dequantized: dict name -> float32 ndarray."""
    with h5py.File(path, "r") as f:
        check_format(f)
        return {name: dequantize(g) for name, g in f["tensors"].items()}


def _describe(name, g):
    if "data" in g:
        return "%-60s %-8s %s" % (name, g["data"].dtype, list(g["data"].shape))
    a = g.attrs
    gran = attr_str(a["granularity"])
    kind = "int%d %s %s%s" % (int(a["bits"]), gran,
                               "sym" if bool(a["symmetric"]) else "asym",
                               " gs=%d" % int(a["group_size"]) if gran == "group" else "")
    return "%-60s %-8s %s %s method=%s" % (name, attr_str(a["scheme"]), list(int(x) for x in a["shape"]),
                                          kind, attr_str(a["method"]))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: proteus_h5.py FILE.h5\n")
        return 2
    with h5py.File(argv[1], "r") as f:
        check_format(f)
        for key in ("architecture", "model_name", "created_by", "num_ranks"):
            v = f.attrs[key]
            print("%s: %s" % (key, attr_str(v) if isinstance(v, (bytes, np.bytes_, str)) else v))
        metrics = f.get("metrics")
        for name, g in f["tensors"].items():
            w = dequantize(g)
            line = _describe(name, g)
            line += "  min=%.6g max=%.6g" % (w.min(), w.max()) if w.size else ""
            if metrics is not None and name in metrics:
                line += "  sqnr=%.2f dB" % float(metrics[name].attrs["sqnr_db"])
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
