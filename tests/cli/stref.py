# SPDX-License-Identifier: Apache-2.0
"""stref.py - independent numpy readers/writers for safetensors and the
quantization contract, used by the integration tests as the expectation."""
import json
import struct

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
      "I8": np.int8, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        a = np.frombuffer(raw[base + b:base + e], dtype=DT[info["dtype"]])
        out[name] = a.reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    hdr, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = {v: k for k, v in DT.items()}[a.dtype.type]
        b = a.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def qrange(bits, sym):
    if bits == 8:
        return (-127, 127) if sym else (-128, 127)
    return (-7, 7) if sym else (-8, 7)


EPS = np.float32(np.finfo(np.float32).eps)


def qparams(mn, mx, bits, sym):
    """The PyTorch MinMaxObserver formula in float32, vectorised."""
    qmin, qmax = qrange(bits, sym)
    mn = np.minimum(np.float32(mn), np.float32(0))
    mx = np.maximum(np.float32(mx), np.float32(0))
    if sym:
        amax = np.maximum(-mn, mx).astype(np.float32)
        scale = (amax / np.float32((qmax - qmin) / 2)).astype(np.float32)
        scale = np.maximum(scale, EPS)
        zp = np.zeros_like(scale, dtype=np.int32)
    else:
        scale = ((mx - mn) / np.float32(qmax - qmin)).astype(np.float32)
        scale = np.maximum(scale, EPS)
        zp = (qmin - np.rint((mn / scale).astype(np.float32))).astype(np.int64)
        zp = np.clip(zp, qmin, qmax).astype(np.int32)
    return scale.astype(np.float32), zp


def quantize(w, bits, sym, gran, group_size=0):
    """Expected (codes int8 [r,c], scale, zp) for a 2-D float32 weight."""
    w = w.astype(np.float32)
    qmin, qmax = qrange(bits, sym)
    r, c = w.shape
    if gran == "tensor":
        scale, zp = qparams(w.min(), w.max(), bits, sym)
        s_full = np.full((r, c), scale, np.float32)
        z_full = np.full((r, c), zp, np.int32)
        scale, zp = np.array([scale]), np.array([zp])
    elif gran == "channel":
        scale, zp = qparams(w.min(1), w.max(1), bits, sym)
        s_full = np.repeat(scale[:, None], c, 1)
        z_full = np.repeat(zp[:, None], c, 1)
    else:
        g = (c + group_size - 1) // group_size
        mn = np.stack([w[:, k * group_size:(k + 1) * group_size].min(1) for k in range(g)], 1)
        mx = np.stack([w[:, k * group_size:(k + 1) * group_size].max(1) for k in range(g)], 1)
        scale, zp = qparams(mn, mx, bits, sym)
        s_full = np.repeat(scale, group_size, 1)[:, :c]
        z_full = np.repeat(zp, group_size, 1)[:, :c]
    inv = (np.float32(1) / s_full).astype(np.float32)
    q = np.rint((w * inv).astype(np.float32)).astype(np.int64) + z_full
    q = np.clip(q, qmin, qmax).astype(np.int8)
    return q, scale, zp


def pack_i4(q):
    r, c = q.shape
    if c % 2:
        q = np.concatenate([q, np.zeros((r, 1), np.int8)], 1)
    lo = (q[:, 0::2].astype(np.int16) + 8) & 0xF
    hi = (q[:, 1::2].astype(np.int16) + 8) & 0xF
    return (lo | (hi << 4)).astype(np.uint8)
