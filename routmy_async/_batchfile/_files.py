"""The file side of a batch run (sync; the run calls these in worker threads or between awaits).

- **The lock**: ``OUTPUT.lock`` holds the pid of the run writing ``OUTPUT`` and an advisory
  ``flock`` on it. The kernel drops the lock when the process ends, however it ends (a
  ``kill -9`` too), so a lock file left behind by a dead run is never mistaken for a live one
  and a recycled pid cannot fool it. A second run on the same output is refused.
- **Appending**: the output is opened with ``O_APPEND`` and every result is one ``write()``
  of a whole line, newline included, issued between two awaits, so neither a cancellation
  nor a signal handler can cut one. A write that fails halfway (a full disk) is truncated
  back to the last whole line before the error is raised. There is no fsync per line (it
  would cost milliseconds each): a crashed *process* loses nothing it wrote, and the files
  are fsynced when a run ends; after a crash of the *machine* the last lines may be missing
  or garbled, and the next run's scan drops them and sends those requests again.
- **The input** is opened once. Validation reads it to its end and keeps a digest of each
  block; the run reads exactly those bytes again and checks each block before it hands out
  a line of it. Lines another process appends meanwhile are left for the next run (which
  validates them); a file truncated, rewritten or replaced meanwhile stops the run.
- **Reading back**: whole lines only. A last line without its newline is torn; a run cuts it
  off (after taking the lock) before appending, a check only counts it.
- **Compaction**: once a run has ended, failure lines superseded by a later result of the
  same id (and unreadable lines) are dropped: the file is rewritten to a temporary file,
  fsynced and renamed over the original, so a crash leaves one or the other, whole. The new
  file gets the old one's mode and owner, and a symlinked output is compacted where it
  points (the link stays); a file whose owner cannot be kept, or with other hard links, is
  left as it is (superseded failure lines are harmless, only not compact).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from ._control import BatchFileError
from ._idset import fingerprint
from ._lines import read_output_line
from ._resume import FileScan, ResumeState

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BLOCK_SIZE",
    "Appender",
    "FileLock",
    "InputFile",
    "Stopped",
    "compact_file",
    "compacting_path",
    "lock_path",
    "scan_file",
]

logger = logging.getLogger("routmy_async")

_write = os.write  # one name for every result write (a test stands a full disk in for it)

#: Bytes read at a time (a list of whole lines of about this size).
BLOCK_SIZE = 256 * 1024
_BOM = b"\xef\xbb\xbf"
_CHECK_EVERY = 4096  # lines between two looks at should_stop


class Stopped(Exception):
    """A stop was requested while a file was being read."""


def lock_path(path: Path) -> Path:
    """The lock file of an output file: ``results.jsonl.lock``."""
    return path.with_name(path.name + ".lock")


class FileLock:
    """An exclusive lock on an output file, held by this process until :meth:`release`."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = lock_path(target)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock.

        :raises BatchFileError: another live process holds it.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
                    raise BatchFileError(
                        f"{self.target} is being written by another batch run (pid {holder}, "
                        f"lock {self.path}): wait for it to end, or stop it; two runs on one "
                        "output would interleave their lines"
                    )
                # The holder before us unlinks the lock file as it releases it: locking that
                # unlinked file would lock nothing. Take the lock only on the file the path
                # names now.
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    current = None
                mine = os.fstat(fd)
                if current is None or (current.st_dev, current.st_ino) != (
                    mine.st_dev,
                    mine.st_ino,
                ):
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return

    def release(self) -> None:
        """Give the lock up and remove the lock file."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:  # pragma: no cover - someone removed it by hand
            pass
        finally:
            os.close(fd)  # closing drops the flock


def _try_lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: a byte-range lock, also dropped on exit
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise  # pragma: no cover - a file system without locks
    return True


class Appender:
    """Appends whole lines to a file, one ``write()`` each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        #: The file's size: every byte of it is a whole line.
        self.size = os.fstat(self._fd).st_size

    def write(self, line: bytes) -> None:
        """Append ``line`` (which ends with a newline).

        :raises OSError: the write failed; the file is left at its last whole line.
        """
        written = _write(self._fd, line)
        if written != len(line):
            self._write_rest(line, written)
        self.size += len(line)

    def _write_rest(self, line: bytes, written: int) -> None:
        view = memoryview(line)
        try:
            while written < len(line):
                written += _write(self._fd, view[written:])
        except OSError:
            # Cut the part that made it, so the file still ends with a whole line.
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:  # pragma: no cover - the next run's scan drops the torn line
                pass
            raise

    def close(self) -> None:
        """Flush the file to disk (``fsync``) and close it; again: nothing."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _digest(data: bytes) -> bytes:
    # 128 bits of BLAKE2b: a changed block passing for the validated one is out of reach,
    # and hashing costs about a second per 200 MB, far below the validation itself.
    return hashlib.blake2b(data, digest_size=16).digest()


class InputFile:
    """The input file, opened once: what validation read is what the run sends.

    :meth:`validation_blocks` reads the file to its end as blocks of whole lines (the last
    one may lack its newline) and keeps each block's size and digest; :meth:`read_block`
    then reads exactly those blocks again, checking each before any line of it is used.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("rb")
        info = os.fstat(self._file.fileno())
        self._identity = (info.st_dev, info.st_ino)
        self._blocks: list[tuple[int, bytes]] = []
        self._next = 0
        #: Bytes validated: the run reads no further.
        self.size = 0
        #: Bytes of a last line left out as still being written (no newline, not JSON).
        self.unfinished = 0

    def validation_blocks(self) -> Iterator[list[bytes]]:
        """Read the whole file (again from its start), recording what was read.

        A last line without its newline that is not valid JSON is a line another process
        is still writing: it is left out, as if not there yet (``unfinished``, and
        :meth:`grown` counts it). One without a newline that parses is a whole last line.
        """
        self._file.seek(0)
        self._blocks = []
        self._next = 0
        self.size = 0
        self.unfinished = 0
        while True:
            block = self._file.readlines(BLOCK_SIZE)
            if block and not block[-1].endswith(b"\n") and self._unfinished(block[-1]):
                self.unfinished = len(block[-1])
                block.pop()
            if not block:
                return
            data = b"".join(block)
            self._blocks.append((len(data), _digest(data)))
            self.size += len(data)
            yield block

    def _unfinished(self, raw: bytes) -> bool:
        """Whether a last line without a newline is one still being written."""
        if self.size == 0 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            return False
        try:
            msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return True
        return False

    def rewind(self) -> None:
        """Go back to the first block validated."""
        self._file.seek(0)
        self._next = 0

    def read_block(self) -> list[bytes]:
        """The next block validated, as lines; empty after the last one.

        :raises BatchFileError: the file was replaced, removed, truncated or rewritten since
            it was validated.
        """
        if self._next >= len(self._blocks):
            return []
        size, digest = self._blocks[self._next]
        offset = self._file.tell()
        self._check_same_file()
        data = self._file.read(size)
        if len(data) < size:
            raise self._changed(f"was cut to {offset + len(data):,} bytes")
        if _digest(data) != digest:
            raise self._changed(f"was rewritten (the bytes from offset {offset:,} differ)")
        self._next += 1
        return io.BytesIO(data).readlines()

    def _check_same_file(self) -> None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise self._changed("was removed") from None
        if (info.st_dev, info.st_ino) != self._identity:
            raise self._changed("was replaced by another file")

    def _changed(self, how: str) -> BatchFileError:
        return BatchFileError(
            f"{self.path}: the input {how} since it was validated; the run stopped there. "
            "The lines already sent are in the output: run again once the file is final, "
            "to validate it again and send the rest"
        )

    def grown(self) -> int:
        """Bytes the file has beyond what was validated (another process appending)."""
        try:
            return max(0, os.fstat(self._file.fileno()).st_size - self.size)
        except OSError:  # pragma: no cover - a descriptor we hold does not go bad
            return 0

    def close(self) -> None:
        self._file.close()


def scan_file(
    path: Path, state: ResumeState, *, repair: bool, should_stop: Callable[[], bool]
) -> FileScan:
    """Read an output file back into ``state``; with ``repair``, cut off a torn last line.

    A missing file is an empty one.

    :raises Stopped: ``should_stop()`` became true.
    """
    scan = state.begin(path)
    try:
        source = path.open("r+b" if repair else "rb")
    except FileNotFoundError:
        return scan
    with source:
        seen = 0
        while True:
            block = source.readlines(BLOCK_SIZE)
            if not block:
                break
            seen += len(block)
            if seen >= _CHECK_EVERY:
                seen = 0
                if should_stop():
                    raise Stopped
            for raw in block:
                if raw.endswith(b"\n"):
                    state.feed(scan, raw)
                else:  # only ever the last line
                    scan.torn = len(raw)
        if scan.torn and repair:
            source.truncate(scan.size)
            source.flush()
            os.fsync(source.fileno())
    return scan


def compacting_path(path: Path) -> Path:
    """Where compaction writes the new file before it is renamed over ``path`` (beside the
    file a symlink points to, which is the one replaced)."""
    real = path.resolve()
    return real.with_name(real.name + ".compacting")


def _keep_identity(target: int, original: os.stat_result, path: Path) -> bool:
    """Give the new file the original's mode and owner; ``False`` when it cannot be done
    (the rename would hand the file to us, or split its hard links)."""
    if original.st_nlink > 1:
        logger.warning("%s: not compacted: it has other hard links, a rewrite splits them", path)
        return False
    if not hasattr(os, "fchown"):  # pragma: no cover - Windows: no POSIX mode or owner
        return True
    os.fchmod(target, stat.S_IMODE(original.st_mode))
    mine = os.fstat(target)
    if (mine.st_uid, mine.st_gid) != (original.st_uid, original.st_gid):
        try:
            os.fchown(target, original.st_uid, original.st_gid)
        except PermissionError:
            logger.warning(
                "%s: not compacted: the rewritten file could not keep its owner (uid %d)",
                path,
                original.st_uid,
            )
            return False
    return True


def compact_file(
    path: Path,
    *,
    keep_from: int,
    drop: Callable[[int], bool],
    should_stop: Callable[[], bool],
) -> int:
    """Drop the unreadable lines before ``keep_from``, and the failure lines whose id's
    fingerprint ``drop`` accepts; return how many lines went.

    The file is rewritten beside itself and renamed over the original (atomic), and only
    when a line is dropped.

    :raises Stopped: ``should_stop()`` became true (the file is left as it was).
    """
    path = path.resolve()  # through a symlink: the link stays, its target is rewritten
    temporary = compacting_path(path)
    dropped = 0
    try:
        with path.open("rb") as source, temporary.open("wb") as target:
            if not _keep_identity(target.fileno(), os.fstat(source.fileno()), path):
                return 0
            offset = 0
            while offset < keep_from:
                block = source.readlines(BLOCK_SIZE)
                if not block:  # pragma: no cover - the file shrank under us
                    raise Stopped
                if should_stop():
                    raise Stopped
                for raw in block:
                    if offset < keep_from:
                        seen = read_output_line(raw)
                        if seen is None or (not seen.ok and drop(fingerprint(seen.custom_id))):
                            dropped += 1
                            offset += len(raw)
                            continue
                    offset += len(raw)
                    target.write(raw)
            if dropped:
                shutil.copyfileobj(source, target, BLOCK_SIZE)
                target.flush()
                os.fsync(target.fileno())
        if dropped:
            os.replace(temporary, path)
            _sync_directory(path.parent)
    finally:
        if temporary.exists():
            temporary.unlink()
    return dropped


def _sync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory that holds the file (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse it
        pass
    finally:
        os.close(fd)
