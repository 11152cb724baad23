"""Batch files: OpenAI Batch-format JSONL in, results out, resumable and crash-safe.

``_api`` (the functions), ``_control`` (stop, error) and ``_summary`` (the results) load with
the package; the rest on the first run:

- ``_idset``: compact sets of id fingerprints (pure);
- ``_lines``: one input line checked, one output line built, one read back (pure);
- ``_resume``: output lines in, done ids out (pure);
- ``_validate``: the validation pass over an input file;
- ``_files``: the lock, the appender, reading back, compaction (file I/O);
- ``_run``: the run itself.
"""

from ._api import check_batch_file, run_batch_file
from ._control import BatchFileError, BatchStop
from ._summary import BatchCheck, BatchSummary

__all__ = [
    "BatchCheck",
    "BatchFileError",
    "BatchStop",
    "BatchSummary",
    "check_batch_file",
    "run_batch_file",
]
