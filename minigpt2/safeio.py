"""Reading a file that might not be one: a FIFO, a device or a socket in place of config.json, a tokenizer
file, the weights or a manifest is refused at once (reading it would hang, or never end), and so is a
file over a size cap (reading it would exhaust memory). Every error names the file.

The type is checked twice: by stat() before opening, so a device is never even opened, and by fstat()
on the descriptor, opened non-blocking (a FIFO swapped in between would otherwise block the open).
"""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path

KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "a special file")


def _not_regular(path, mode: int) -> OSError:
    return OSError(errno.EINVAL, f"is {_kind(mode)}, not a regular file; put the file itself there", str(path))


def _check_size(path, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise OSError(errno.EFBIG, f"is {size:,} bytes, more than the {max_bytes:,} such a file can be; "
                                   "is it the right file?", str(path))


def open_regular(path: str | Path, max_bytes: int | None = None):
    """path opened for reading in binary ("rb"), after checking that it is a regular file of at most
    max_bytes (None: any size). OSError naming the file otherwise: its strerror says what is wrong."""
    mode = os.stat(path).st_mode                              # FileNotFoundError etc. carry the name already
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        _check_size(path, st.st_size, max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of path, a regular file of at most max_bytes (open_regular's checks), read to the end; a
    file that grew past max_bytes while being read is refused too."""
    try:
        with open_regular(path, max_bytes) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        if e.filename is None:               # a read error (EIO): name the file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    _check_size(path, len(data), max_bytes)
    return data


def load_json(path: str | Path, max_bytes: int):
    """The JSON value in path (UTF-8, a regular file of at most max_bytes). ValueError for text that is not
    UTF-8 or not JSON, for nesting too deep to decode (not RecursionError) and for integers too long to
    convert (Python's int-str limit); OSError for a file that cannot be read."""
    return parse_json(read_regular(path, max_bytes).decode("utf-8"))


def parse_json(text: str):
    """json.loads, with ValueError (not RecursionError) for nesting too deep to decode, and a clear
    ValueError for an integer too long to convert."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _parse_int(digits: str) -> int:
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)() or 4300
    if len(digits) > limit:
        raise ValueError(f"an integer of {len(digits):,} digits, too long to be a real value")
    return int(digits)


def brief(value, limit: int = 60) -> str:
    """A JSON value as short text for an error message: at most limit characters, whatever the value."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
