"""warnings.catch_warnings, one block at a time.

catch_warnings swaps the process's warning filters and showwarning for its
block and puts back, on leaving, what it found on entering.  Two blocks that
overlap in threads put back each other's copies, which leaves the program's
warnings changed for good: every later warning recorded to a list nobody
reads, or ignored.  rescodec's blocks therefore run under one lock, held no
longer than the block; so image reads in threads (Pillow's open and decode
of an input) run one at a time, and the coding after them in parallel.  It is re-entrant: an image read's block holds the
EXIF checks' (images.py)."""
import threading
import warnings
from contextlib import contextmanager

_LOCK = threading.RLock()


@contextmanager
def caught_warnings(record: bool = False):
    """warnings.catch_warnings(record=record), under rescodec's one lock."""
    with _LOCK, warnings.catch_warnings(record=record) as said:
        yield said
