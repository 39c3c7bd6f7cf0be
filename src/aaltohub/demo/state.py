"""Lay out the demo's state directory: users, courses, secrets and storage.

The storage is laid out exactly like the campus NFS volume, by the same
code that ``aaltohub course create`` uses (:mod:`aaltohub.storage`)::

    storage/u/NN/<user>            0700  the user's home (owned by the user)
    storage/course/<dir>/files     2770  instructors (course group)
    storage/course/<dir>/data      2775  course data, read-only to students
    storage/exchange/<dir>/...     nbgrader's group-shared exchange

As root, owners and groups are the real uids and gids from the users and
course files. As a normal user everything belongs to that user (the modes
are the same, but nothing separates the demo users; see docs/demo.md).
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import replace
from importlib import resources

import yaml
from traitlets.config import Config

from ..catalog import CourseCatalog
from ..identity.static import parse_static_users
from ..storage import course_dirs
from ..storage.homes import make_home
from ..storage.layout import LayoutError, StorageLayout
from ..storage.paths import StoragePaths
from .auth import write_password_hash
from .settings import StatePaths

SAMPLE_DATA = {
    "README.md": "# Course data\n\nShared, read-only data for the course."
    " Students can read it at /coursedata; instructors can also write it.\n",
    "measurements.csv": "day,temperature\n1,-3.5\n2,-1.0\n3,0.5\n4,2.0\n",
}


def _write_private(path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _copy_package_data(paths: StatePaths) -> None:
    """Copy the demo users and courses at first start; later edits stay."""
    data = resources.files("aaltohub.demo")
    if not paths.users.exists():
        paths.users.write_text(data.joinpath("users.yaml").read_text("utf-8"))
    if not paths.catalog.exists():
        paths.catalog.mkdir(mode=0o755)
        for item in data.joinpath("catalog").iterdir():
            if item.name.endswith(".yaml"):
                (paths.catalog / item.name).write_text(item.read_text("utf-8"))


def prepare(paths: StatePaths, password: str) -> dict:
    """Create or update the state directory; returns what the banner shows:
    ``{"users": {...}, "courses": [...], "problems": [...]}``."""
    root = paths.root
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for d in (paths.storage, paths.servers, paths.logs):
        d.mkdir(mode=0o755, exist_ok=True)
    paths.secrets.mkdir(mode=0o700, exist_ok=True)
    _copy_package_data(paths)
    write_password_hash(str(paths.password_hash), password)
    if not paths.crypt_key.exists():
        _write_private(paths.crypt_key, secrets.token_hex(32))  # JupyterHub's format

    with open(paths.users, encoding="utf-8") as f:
        users = parse_static_users(yaml.safe_load(f), str(paths.users))
    catalog = CourseCatalog(path=str(paths.catalog)).load()
    problems = catalog.problems()
    problems += lay_out_storage(str(paths.storage), catalog, users)
    write_quota_report(paths, users)
    return {"users": users, "courses": catalog, "problems": problems}


#: The demo user whose home is near its quota (the warnings in docs/demo.md).
NEAR_QUOTA_USER = "student2"
QUOTA_KIB = 1024 * 1024  # 1 GiB for everyone


def write_quota_report(paths: StatePaths, users: dict) -> None:
    """A repquota report as the storage would write it: NEAR_QUOTA_USER at
    95 %, everyone else nearly empty. Numbers only; no file is that big."""
    rows = []
    for name in sorted(users):
        used = QUOTA_KIB * 95 // 100 if name == NEAR_QUOTA_USER else 2048
        rows.append(
            f"{name:<10} --{used:>8}{QUOTA_KIB:>8}{QUOTA_KIB:>8}{10:>15}{0:>6}{0:>6}"
        )
    text = (
        "*** Report for user quotas on device /dev/demo\n"
        "Block grace time: 7days; Inode grace time: 7days\n"
        "                        Block limits                File limits\n"
        "User            used    soft    hard  grace    used  soft  hard  grace\n"
        "----------------------------------------------------------------------\n"
        + "\n".join(rows)
        + "\n"
    )
    paths.quota_report.parent.mkdir(mode=0o755, exist_ok=True)
    tmp = paths.quota_report.with_name(paths.quota_report.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, paths.quota_report)  # the hub never reads half a file


def lay_out_storage(storage: str, catalog: CourseCatalog, users: dict) -> list[str]:
    """Homes and course directories with production modes; returns problems."""
    as_root = os.geteuid() == 0
    problems: list[str] = []
    paths = StoragePaths()  # the demo hub uses the default layout
    for identity in users.values():
        rel = paths.home(identity.username, identity.uid)
        uid, gid = (
            (identity.uid, identity.gid) if as_root else (os.geteuid(), os.getegid())
        )
        make_home(storage, rel, uid, gid)
    layout = StorageLayout(
        config=Config(), paths=paths, course_uid=0 if as_root else os.geteuid()
    )
    for course in catalog.courses.values():
        try:
            entries = layout.entries(course)
        except LayoutError as e:
            problems.append(str(e))
            continue
        if not as_root:
            # Only root can give directories away; keep the modes.
            entries = [replace(e, uid=None, gid=None) for e in entries]
        result = course_dirs.run(storage, entries, fix=True, walk=False)
        problems += [str(p) for p in result.unfixed]
        if course.datadir and not course.archive:
            data = paths.course_data(course)
            _seed(os.path.join(storage, data), course.gid if as_root else None)
    return problems


def _seed(data_dir: str, gid: int | None) -> None:
    """Sample files in an empty course data directory."""
    if not os.path.isdir(data_dir) or os.listdir(data_dir):
        return
    for name, text in SAMPLE_DATA.items():
        path = os.path.join(data_dir, name)
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)
        if gid is not None:
            os.chown(path, 0, gid)
        os.chmod(path, 0o664)


def new_password() -> str:
    return secrets.token_urlsafe(9)


def reset_servers_dir(paths: StatePaths) -> None:
    """Views of servers of an earlier run are stale: remove them (they hold
    only symlinks, empty mount points and generated files)."""
    if paths.servers.is_dir():
        shutil.rmtree(paths.servers, ignore_errors=True)
    paths.servers.mkdir(mode=0o755, exist_ok=True)
