"""Reading files of a directory that a less trusted party writes.

:func:`read_bytes` opens a file beneath a directory handle, following
symlinks only while they stay inside, never blocking on a FIFO, and reading
at most a size limit; anything but a regular file is :class:`Refused` with
a message that says why and what to do.
"""

from __future__ import annotations

import errno
import os
import stat


class Refused(Exception):
    """A file the catalog does not read; str() says why and what to do."""


_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 8


def open_beneath(root: int, name: str) -> int:
    """Open ``name`` relative to the directory fd ``root``, following
    symlinks only while they stay beneath it (like openat2's
    RESOLVE_BENEATH). Every component is opened with O_NOFOLLOW, so a link
    swapped in meanwhile fails instead of being followed; O_NONBLOCK keeps a
    FIFO from blocking the open."""
    todo = list(reversed(name.split("/")))
    dirs = [root]  # dirs[1:] are ours to close
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(dirs) == 1:
                    raise Refused(_OUTSIDE)
                os.close(dirs.pop())
                continue
            try:
                target = os.readlink(part, dir_fd=dirs[-1])
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: not a symlink
                    raise
            else:
                links += 1
                if links > _MAX_LINKS or target.startswith("/"):
                    raise Refused(_OUTSIDE)
                todo.extend(reversed(target.split("/")))
                continue
            if not todo:
                return os.open(part, _READ, dir_fd=dirs[-1])
            dirs.append(os.open(part, _DIR, dir_fd=dirs[-1]))
        raise Refused(_NOT_A_FILE)
    finally:
        for fd in dirs[1:]:
            os.close(fd)


_NOT_A_FILE = "not a regular file (a directory); a course file must be a plain file"
_OUTSIDE = (
    "symlink leads outside the course directory; only relative links to files"
    " inside it are followed (replace the link with a copy of the file)"
)
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def read_bytes(root: int, name: str, max_size: int) -> bytes:
    fd = open_beneath(root, name)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "special")
            raise Refused(
                f"not a regular file ({kind}); a course file must be a plain file"
            )
        if st.st_size > max_size:
            raise Refused(_too_big(st.st_size, max_size))
        chunks, size = [], 0
        # Read at most one byte more than allowed: the file may be growing.
        while chunk := os.read(fd, max_size + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_size:
                raise Refused(_too_big(size, max_size))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_big(size: int, max_size: int) -> str:
    return (
        f"the file has {size} bytes, more than c.CourseCatalog.max_file_size"
        f" ({max_size}); split it, or ask the deployer to raise the limit"
    )
