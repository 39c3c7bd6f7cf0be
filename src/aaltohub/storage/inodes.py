"""Changing one inode safely, on storage other people can write to.

:func:`change_inode` changes owner and mode through an ``O_PATH``
descriptor of the very inode that was checked, so a name swapped meanwhile
for a symlink or a hard link to a file outside the course is refused, never
changed.
"""

from __future__ import annotations

import errno
import functools
import os
import stat

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@functools.cache
def _proc_fd_works() -> bool:
    return os.path.isdir("/proc/self/fd")


def change_inode(dir_fd: int, name: str, st, owner, mode) -> None:
    """chown (``owner``: (uid, gid) or None) and chmod (``mode`` or None) the
    inode ``st`` describes, found as ``name`` in ``dir_fd``, and nothing else.

    Works through an ``O_PATH`` descriptor and ``/proc/self/fd``, so a name
    swapped since ``st`` was taken (for a symlink, another file, a hard link
    to a file outside the course) is refused, never changed.
    """
    if not _proc_fd_works():
        raise OSError(errno.ENOSYS, "/proc is not mounted; mount it and run again")
    fd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or stat.S_ISLNK(
            now.st_mode
        ):
            raise OSError(
                errno.ESTALE,
                "it was replaced while being checked; run the command again",
            )
        if not stat.S_ISDIR(now.st_mode) and now.st_nlink > 1:
            raise OSError(
                errno.EMLINK,
                f"it has {now.st_nlink} hard links now; see 'aaltohub course check'",
            )
        inode = f"/proc/self/fd/{fd}"  # this very inode, whatever the name is now
        if owner is not None:
            os.chown(inode, *owner)
            now = os.fstat(fd)  # chown may clear setgid, so look again
        if mode is not None and mode != stat.S_IMODE(now.st_mode):
            os.chmod(inode, mode)
    finally:
        os.close(fd)
