# SPDX-License-Identifier: Apache-2.0
"""fasta_crop.py - the first records of a FASTA, cropped: short calibration
data for the QAT tests (GPTQ and the static ranges in seconds)."""


def write_cropped(src, dst, n_records, max_residues):
    """The first n_records of src, each cut to max_residues, into dst."""
    recs, cur = [], None
    for line in open(src):
        if line.startswith(">"):
            cur = [line.strip(), ""]
            recs.append(cur)
        elif cur:
            cur[1] += line.strip()
    with open(dst, "w") as g:
        for h, seq in recs[:n_records]:
            g.write(f"{h}\n{seq[:max_residues]}\n")
    return dst
