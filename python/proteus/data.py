# SPDX-License-Identifier: Apache-2.0
"""data.py - sequences as the library reads them: a FASTA path is used as
it is; a list of sequences (strings, or (id, sequence) pairs) is written to
a temporary FASTA file for the duration of a call."""
import contextlib
import os
import tempfile

from .errors import ConfigurationError


@contextlib.contextmanager
def fasta_path(data, what="sequences"):
    """Yield a FASTA path for data: a path (str or os.PathLike) as given, or
    a list/tuple of sequences written to a temporary file removed after."""
    if isinstance(data, (str, os.PathLike)):
        yield os.fspath(data)
        return
    if isinstance(data, (list, tuple)) and data:
        fd, path = tempfile.mkstemp(prefix="proteus_", suffix=".fasta")
        try:
            with os.fdopen(fd, "w") as f:
                for i, item in enumerate(data):
                    rid, seq = item if isinstance(item, (list, tuple)) else ("seq%d" % i, item)
                    if not isinstance(seq, str) or not seq.strip():
                        raise ConfigurationError("%s: item %d is not a non-empty sequence string" % (what, i))
                    f.write(">%s\n%s\n" % (rid, seq.strip()))
            yield path
        finally:
            os.unlink(path)
        return
    raise ConfigurationError("%s: expected a FASTA path or a non-empty list of sequences, got %r"
                             % (what, type(data).__name__))
