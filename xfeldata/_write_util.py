"""Effects shared by the writers: atomic output files, target checks, progress.

Every file xfeldata writes goes to a temporary name in the target folder and
is renamed over the final name only when complete (``os.replace``, atomic
within one filesystem), so a crash or a full disk never leaves a half-written
file under the final name. The temporary file is removed on any error.
"""
from __future__ import annotations

import os
import os.path as osp
import secrets
import sys
import time

__all__ = ['temp_path_for', 'check_target', 'atomic_output', 'Progress', 'wants_progress']


def temp_path_for(path: str) -> str:
    """A fresh hidden temporary name beside ``path`` (same folder, same filesystem)."""
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}.{secrets.token_hex(4)}.xfeldata-tmp')


def _same_file(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return osp.realpath(a) == osp.realpath(b)


def check_target(path, input_paths=()) -> str:
    """Check that ``path`` can be written; return it as an absolute path.

    Raises
    ------
    ValueError
        ``path`` is one of ``input_paths`` (an input is never overwritten).
    IsADirectoryError
        ``path`` is a folder.
    FileNotFoundError
        The target folder does not exist.
    PermissionError
        The target folder is not writable.
    """
    path = osp.abspath(os.fspath(path))
    for p in input_paths:
        if _same_file(path, p):
            raise ValueError(f"refusing to write {path}: it is an input file of this data")
    if osp.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    folder = osp.dirname(path)
    if not osp.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: folder {folder} is not writable")
    return path


class atomic_output:
    """Context manager: yields a temporary path; on success renames it to ``path``.

    The temporary name is created (``O_EXCL``) before the body runs, so an
    unwritable folder fails before any work, and removed again at once when
    ``mode`` is the default 0666 (filtered by the umask, which is also how
    HDF5 creates files): the body creates the file itself. Opening an existing
    file with ``O_TRUNC`` (``h5py.File(tmp, 'w')``) would make ext4 flush all
    the data written to it when it is closed (its "replace via truncate"
    safeguard), about 0.3 s per GB. On an exception the temporary file is
    deleted and the exception propagates; ``path`` is untouched.
    """

    def __init__(self, path, mode: int = 0o666):
        self.path = osp.abspath(os.fspath(path))
        self.mode = mode
        self.tmp = None

    def __enter__(self) -> str:
        self.tmp = temp_path_for(self.path)
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        except PermissionError as e:
            raise PermissionError(
                f"cannot write {self.path}: folder {osp.dirname(self.path)} is not "
                f"writable ({e.strerror})") from None
        os.close(fd)
        if self.mode == 0o666:
            os.unlink(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                os.replace(self.tmp, self.path)
                return False
            except BaseException:
                self._discard()
                raise
        self._discard()
        return False

    def _discard(self):
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def wants_progress(progress, stream=None) -> bool:
    """``progress`` True/False, or None = only when ``stream`` (stderr) is a terminal."""
    if progress is not None:
        return bool(progress)
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except Exception:
        return False


class Progress:
    """A one-line progress display on stderr (updated at most 5 times a second)."""

    def __init__(self, total: int, label: str = 'Writing', enabled=None, stream=None,
                 unit: str = 'bytes'):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = wants_progress(enabled, self.stream)
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self._last = 0.0

    def _text(self) -> str:
        from .utils import progress_bar
        if self.unit == 'bytes':
            return f"{self.label} {progress_bar(self.done >> 20, self.total >> 20, ' MiB')}"
        return f"{self.label} {progress_bar(self.done, self.total, ' ' + self.unit)}"

    def update(self, n: int, force: bool = False):
        self.done += int(n)
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last > 0.2:
            self._last = now
            self.stream.write('\r' + self._text())
            self.stream.flush()

    def close(self):
        if self.enabled:
            self.done = max(self.done, 0)
            self.stream.write('\r' + self._text() + '\n')
            self.stream.flush()
