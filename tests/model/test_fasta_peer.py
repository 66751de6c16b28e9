# SPDX-License-Identifier: Apache-2.0
"""test_fasta_peer.py - the token ids Proteus reads from FASTA records against
fair-esm's ESM-2 alphabet and batch converter, on the edge cases users bring:
the ambiguity codes B Z U O X, '.', '-', literal <mask>/<unk>/<cls>/<eos>,
lowercase letters, a '*' terminator, Windows line ends, blank lines, spaces,
a record over several lines, gzip, and a 100,000-residue protein (cropped as
the converter's truncation_seq_length does). fair-esm raises on lowercase and
on '*'; Proteus's rule (model/tokenizer.h) is to uppercase and to drop one
final '*', so those records are compared with fair-esm on the sequence so
rewritten. What fair-esm does not know (J, '*' inside, digits, '<pad>' as
text, a binary file, an empty record) Proteus refuses naming the record and
the line: checked here against fair-esm raising (or padding) on the same text.

usage: python test_fasta_peer.py FASTA_DUMP"""
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import esm

DUMP = sys.argv.pop(1)
TMP = tempfile.mkdtemp(prefix="pq_fasta_peer_")
ALPHABET = esm.data.Alphabet.from_architecture("ESM-1b")  # ESM-2's alphabet
AA = "ACDEFGHIKLMNPQRSTVWY"
BIG = "".join(AA[(i * 7) % 20] for i in range(100000))
# (id, sequence lines as written, the text fair-esm is given)
CASES = [
    ("plain", ["MKTAYIAKQRQISFVKSHFSRQ"], "MKTAYIAKQRQISFVKSHFSRQ"),
    ("ambiguous", ["BZUOXBZUOX", "XXXX"], "BZUOXBZUOXXXXX"),
    ("gap_dot", ["MK.-GG-.A"], "MK.-GG-.A"),
    ("specials", ["MK<mask>GG<unk>A<cls>L<eos>"], "MK<mask>GG<unk>A<cls>L<eos>"),
    ("lower", ["mktayiakqr", "QIsfvkshfs"], "MKTAYIAKQRQISFVKSHFS"),
    ("star", ["MKTAYIAKQR*"], "MKTAYIAKQR"),
    ("star_own_line", ["MKTAY", "*"], "MKTAY"),
    ("spaces", ["MKT AYI\tAKQR  "], "MKT AYI AKQR"),
    ("one", ["W"], "W"),
    ("big", [BIG[i:i + 60] for i in range(0, len(BIG), 60)], BIG),
]


def fairesm_ids(seq, trunc=None):
    conv = ALPHABET.get_batch_converter(trunc)
    _, _, toks = conv([("x", seq)])
    return toks[0].tolist()


def write(name, data, gz=False):
    p = os.path.join(TMP, name)
    with (gzip.open if gz else open)(p, "wb") as f:
        f.write(data)
    return p


def dump(path, max_res=None):
    cmd = [DUMP, path] + ([str(max_res)] if max_res is not None else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def fasta_text(eol):
    out = []
    for rid, lines, _ in CASES:
        out.append(f">{rid} some description{eol}")
        out += [ln + eol for ln in lines]
        out.append(eol)  # a blank line between records
    return "".join(out).encode()


class AgainstFairEsm(unittest.TestCase):
    def check(self, path, max_res, trunc):
        p = dump(path, max_res)
        self.assertEqual(p.returncode, 0, p.stderr)
        got = dict(ln.split("\t") for ln in p.stdout.splitlines())
        self.assertEqual(list(got), [c[0] for c in CASES])
        for rid, _, text in CASES:
            want = fairesm_ids(text, trunc)
            self.assertEqual([int(v) for v in got[rid].split(",")], want, rid)

    def test_default_crop_like_truncation(self):
        for eol in ("\n", "\r\n"):
            for gz in (False, True):
                with self.subTest(eol=repr(eol), gz=gz):
                    self.check(write(f"cases{len(eol)}{int(gz)}.fa", fasta_text(eol), gz), None, 1022)

    def test_no_limit(self):
        self.check(write("cases.fa", fasta_text("\n")), 0, None)


class Refusals(unittest.TestCase):
    def refused(self, data, record, line):
        p = dump(write("bad.fa", data))
        self.assertEqual(p.returncode, 4, p.stdout + p.stderr)  # the format error's status
        if record:
            self.assertIn(f"record '{record}'", p.stderr)
        self.assertIn(f"line {line}", p.stderr)
        return p.stderr

    def test_letters_fairesm_does_not_know(self):
        for text, col in (("MKJL", 3), ("MK*LL", 3), ("MK1L", 3), ("MK<pad>L", 3), ("MK#", 3)):
            with self.subTest(text=text):
                seq = text
                if "<pad>" in text:
                    # fair-esm takes it for padding: not a residue either
                    self.assertIn(ALPHABET.padding_idx, fairesm_ids(seq))
                else:
                    with self.assertRaises(KeyError):
                        fairesm_ids(seq)
                err = self.refused(f">ok\nMK\n>bad x\nGG\n{text}\n".encode(), "bad", 5)
                self.assertIn(f"column {col}", err)

    def test_empty_record(self):
        # fair-esm would give <cls><eos>: nothing to embed or score
        self.assertEqual(fairesm_ids(""), [ALPHABET.cls_idx, ALPHABET.eos_idx])
        self.refused(b">a\nMK\n>empty\n>c\nGG\n", "empty", 3)

    def test_binary_file(self):
        self.refused(b">x\nMK\n" + bytes(range(256)) + b"\n", None, 3)
        p = dump(write("elf.fa", b"\x7fELF\x02\x01\x01\x00" + bytes(64)))
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("line 1", p.stderr)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(TMP, True)
