# SPDX-License-Identifier: Apache-2.0
"""test_pt_peer.py - PyTorch checkpoints written by torch.save quantize to the
same file as the safetensors of the same weights.

The bundled model's weights are saved by torch.save as (a) a Hugging Face
state dict (pytorch_model.bin), (b) a fair-esm state dict (names from the
peer tests' own fair-esm mapping), (c) fair-esm's checkpoint layout
({"model": ..., "args": ..., "cfg": ...} with encoder.sentence_encoder.
prefixes, non-torch config objects and an object whose __reduce__ would run
`touch MARKER`), (d) sharded .bin with pytorch_model.bin.index.json, (e) in
fp32 and bf16 too, transformers' EsmForMaskedLM.save_pretrained folder, and
a state dict in torch.save's legacy (non-zip) format. `proteus quantize` of each must give the datasets and
attributes, bit for bit, of `proteus quantize` of a safetensors file of the
same weights (written here from the same torch tensors); only the model name,
the source digest (the docs/FORMAT.md recipe over the .pt/.bin files
themselves, checked with hashlib) and the provenance differ. `proteus embed`
of the fair-esm checkpoint gives the safetensors' representations. The marker
file never appears. A transposed tensor and a saved list are refused with
their errors and the format status.

usage: python test_pt_peer.py PROTEUS MODEL.safetensors"""
import argparse
import collections
import ctypes
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import fairesm_ref  # noqa: E402

PROTEUS, MODEL = sys.argv[1], sys.argv[2]
ST_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def raw_bytes(t):
    t = t.contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


def write_safetensors(path, tensors):
    hdr, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = raw_bytes(tensors[name])
        hdr[name] = {"dtype": ST_DT[tensors[name].dtype], "shape": list(tensors[name].shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Cfg:
    """A training configuration of a class torch does not know (as fair-esm's
    argparse / omegaconf objects are)."""
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Evil:
    """Unpickled by Python, this would run a shell command."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def hf_model(hf):
    import transformers
    emb = hf["esm.embeddings.word_embeddings.weight"]
    layers = 1 + max(int(k.split(".")[3]) for k in hf if k.startswith("esm.encoder.layer."))
    head_dim = 2 * hf["esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq"].shape[0]
    cfg = transformers.EsmConfig(vocab_size=emb.shape[0], hidden_size=emb.shape[1], num_hidden_layers=layers,
                                 num_attention_heads=emb.shape[1] // head_dim, intermediate_size=4 * emb.shape[1],
                                 position_embedding_type="rotary", token_dropout=True, pad_token_id=1,
                                 mask_token_id=32, emb_layer_norm_before=False)
    m = transformers.EsmForMaskedLM(cfg)
    missing, unexpected = m.load_state_dict(hf, strict=False)
    if unexpected or set(missing) - {"esm.embeddings.position_ids", "esm.embeddings.position_embeddings.weight"}:
        raise AssertionError(f"EsmForMaskedLM: missing {missing}, unexpected {unexpected}")
    return m


def xxh3_128(b):
    """XXH3-128 of b by the xxhsum tool (Debian's xxhash), canonical bytes."""
    p = subprocess.run(["xxhsum", "-H2", "-"], input=b, capture_output=True, check=True)
    return bytes.fromhex(p.stdout.split()[0].decode())


def source_digest(paths, alg, chunk=64 << 20):
    """The docs/FORMAT.md recipe over the files, in the file's algorithm."""
    h = (lambda b: hashlib.sha256(b).digest()) if alg == "sha256" else xxh3_128
    leaves = b""
    for p in paths:
        d = open(p, "rb").read()
        leaves += b"".join(h(d[i:i + chunk]) for i in range(0, len(d), chunk))
    return h(leaves).hex()


def quantize(model, out):
    p = subprocess.run([PROTEUS, "quantize", "--model", model, "--out", out, "--per-channel", "-q"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"quantize {model} failed ({p.returncode}): {p.stderr}")


def contents(path):
    """{object path: (dataset bytes or None, attributes)} without what names
    the source (model_name, source digest, the provenance)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if name.startswith("provenance"):
                return
            attrs = {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}
            data = (obj.dtype.str, obj.shape, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None
            out[name] = (data, attrs)
        f.visititems(visit)
        root = {k: v for k, v in f.attrs.items() if k not in ("model_name", "source_digest_tree")}
        out["/"] = (None, root)
        # fixed-length strings
        digest, alg = (f.attrs[k].decode() for k in ("source_digest_tree", "source_digest_algorithm"))
    return out, (digest, alg)


def embeds_alike(pt, st, tmp):
    """The fp32 forward reads a .pt as it reads the safetensors: the same
    representations, bit for bit (`proteus embed`)."""
    fasta = os.path.join(tmp, "two.fasta")
    with open(fasta, "w") as f:
        f.write(">a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nGSHMLEDPVAGLLEK\n")
    outs = []
    for m in (pt, st):
        out = os.path.join(tmp, os.path.basename(m) + ".emb.h5")
        p = subprocess.run([PROTEUS, "embed", "--model", m, "--fasta", fasta, "--out", out, "--layers", "0,3,-1",
                            "--threads", "1"], capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError(f"embed {m} failed ({p.returncode}): {p.stderr}")
        with h5py.File(out, "r") as f:
            outs.append({k: f[k + "/mean"][()].tobytes() for k in ("layer_0", "layer_3", "layer_6")})
    if outs[0] != outs[1]:
        raise AssertionError("embed: the .pt and the safetensors give different representations")
    print("fair-esm checkpoint: same embeddings as the safetensors")


def same(a, b, label):
    ca, _ = contents(a)
    cb, _ = contents(b)
    if ca.keys() != cb.keys():
        raise AssertionError(f"{label}: objects differ: {sorted(ca.keys() ^ cb.keys())[:5]}")
    n_q = 0
    for k in ca:
        if ca[k] != cb[k]:
            raise AssertionError(f"{label}: {k} differs from the safetensors quantization")
        n_q += k.endswith("/qweight")
    if n_q != 6 * 6:
        raise AssertionError(f"{label}: {n_q} quantized weights, want 36")


def main():
    tmp = tempfile.mkdtemp(prefix="pq_pt_")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, True)
    print("test_pt_peer: OK")


def refused(tmp):
    """Files torch.save writes that Proteus refuses, each with its error and
    the format status (4)."""
    cases = [("transposed.pt", lambda p: torch.save({"w": torch.randn(3, 4).t()}, p), "not contiguous"),
             ("list.pt", lambda p: torch.save([torch.randn(3)], p), "not a dict of tensors")]
    for name, save, want in cases:
        p = os.path.join(tmp, name)
        save(p)
        r = subprocess.run([PROTEUS, "inspect", p], capture_output=True, text=True)
        if r.returncode != 4 or want not in r.stderr:
            raise AssertionError(f"{name}: status {r.returncode}, stderr {r.stderr!r}; want 4 and {want!r}")
        print(f"{name}: refused ({want})")


def run(tmp):
    refused(tmp)
    hf16 = fairesm_ref.read_safetensors(MODEL)
    marker = os.path.join(tmp, "MARKER")
    if not torch.equal(hf16["lm_head.decoder.weight"], hf16["esm.embeddings.word_embeddings.weight"]):
        raise AssertionError("the bundled model's decoder is expected to equal its embedding (tied)")
    for dt in (torch.float16, torch.float32, torch.bfloat16):
        hf = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in hf16.items()}
        # the references: the safetensors of these weights, with the decoder
        # (as the bundled file) and without it (tied, as transformers'
        # safetensors writer stores a tied model)
        refs = {}

        def ref(tied):
            if tied not in refs:
                st = os.path.join(tmp, f"ref_{ST_DT[dt]}_{tied}.safetensors")
                write_safetensors(st, {k: v for k, v in hf.items() if not (tied and k == "lm_head.decoder.weight")})
                refs[tied] = (st, os.path.join(tmp, f"ref_{ST_DT[dt]}_{tied}.h5"))
                quantize(*refs[tied])
            return refs[tied]
        cases = []
        # (a), (e): a Hugging Face state dict
        d = os.path.join(tmp, f"hf_{ST_DT[dt]}")
        os.mkdir(d)
        torch.save(collections.OrderedDict(sorted(hf.items())), os.path.join(d, "pytorch_model.bin"))
        cases.append(("HF state dict " + ST_DT[dt], d, [os.path.join(d, "pytorch_model.bin")], False))
        if dt == torch.bfloat16:
            # torch.save's legacy (non-zip) format
            p = os.path.join(tmp, "legacy.bin")
            torch.save(hf, p, _use_new_zipfile_serialization=False)
            cases.append(("legacy-format state dict", p, [p], False))
        if dt == torch.float32:
            # transformers' own writer: EsmForMaskedLM.save_pretrained's
            # pytorch_model.bin (with its position_ids / position_embeddings
            # buffers, which the model does not use, and its decoder tied to
            # the embedding: one storage), read from the directory
            d = os.path.join(tmp, "hf_save_pretrained")
            hf_model(hf).save_pretrained(d, safe_serialization=False)
            cases.append(("EsmForMaskedLM.save_pretrained", d, [os.path.join(d, "pytorch_model.bin")], True))
        if dt == torch.float16:
            fe = fairesm_ref.hf_to_fairesm(hf)
            # fair-esm's ESM2 ties lm_head.weight to embed_tokens.weight
            fe["lm_head.weight"] = fe["embed_tokens.weight"]
            # (b) a fair-esm state dict
            p = os.path.join(tmp, "fairesm_sd.pt")
            torch.save(fe, p)
            cases.append(("fair-esm state dict", p, [p], True))
            # (c) fair-esm's checkpoint layout
            pre = {k: ("encoder." + k if k.startswith("lm_head") else "encoder.sentence_encoder." + k)
                   for k in fe}
            ckpt = {"model": collections.OrderedDict((pre[k], v) for k, v in fe.items()),
                    "args": argparse.Namespace(arch="ESM-1b", layers=6, embed_dim=320),
                    "cfg": {"model": Cfg(encoder_layers=6, encoder_embed_dim=320, token_dropout=True)},
                    "extra_state": Evil(marker)}
            p = os.path.join(tmp, "esm2_t6_8M_UR50D.pt")
            torch.save(ckpt, p)
            cases.append(("fair-esm checkpoint", p, [p], True))
            embeds_alike(p, ref(True)[0], tmp)
            # (d) sharded .bin with its index
            d = os.path.join(tmp, "sharded")
            os.mkdir(d)
            names = sorted(hf)
            shards = [names[: len(names) // 2], names[len(names) // 2:]]
            wm = {}
            for i, part in enumerate(shards):
                fn = f"pytorch_model-{i + 1:05d}-of-00002.bin"
                torch.save({k: hf[k] for k in part}, os.path.join(d, fn))
                wm.update({k: fn for k in part})
            idx = os.path.join(d, "pytorch_model.bin.index.json")
            with open(idx, "w") as f:
                json.dump({"metadata": {"total_size": sum(len(raw_bytes(v)) for v in hf.values())},
                           "weight_map": wm}, f)
            cases.append(("sharded .bin", idx, [os.path.join(d, f"pytorch_model-0000{i}-of-00002.bin")
                                                for i in (1, 2)], False))
        for label, path, files, tied in cases:
            out = os.path.join(tmp, "q.h5")
            quantize(path, out)
            same(out, ref(tied)[1], label)
            _, (digest, alg) = contents(out)
            if digest != source_digest(files, alg):
                raise AssertionError(f"{label}: source_digest_tree {digest} ({alg}) is not the recipe's over the files")
            if os.path.exists(marker):
                raise AssertionError(f"{label}: the pickle's os.system ran (MARKER exists)")
            print(f"{label}: same datasets and attributes as the safetensors quantization")
    if os.path.exists(marker):
        raise AssertionError("MARKER exists")


if __name__ == "__main__":
    main()
