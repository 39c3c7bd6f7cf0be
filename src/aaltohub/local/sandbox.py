"""Run one single-user server at the pod's paths in a private mount namespace.

``python -m aaltohub.local.sandbox SPEC CMD...`` is started as root by
LocalCourseSpawner in ``namespace`` mode. It

1. unshares a mount namespace and marks every mount in it private, so that
   nothing done here propagates back to the host;
2. mounts a tmpfs on the spec's (empty) root directory and fills it: the
   system and Python directories as read-only bind mounts at their own
   paths, /etc as symlinks to the host's plus a generated passwd and group,
   /dev, /proc and /sys, and the plan's storage mounts at /notebooks,
   /course, /coursedata, /srv/nbgrader/exchange and /etc/aaltohub,
   read-only where the plan says so;
3. chroots into it, takes the user's uid, gid and groups, sets
   no_new_privs (no setuid escalation), applies the umask and execs CMD
   (so the server keeps this process's pid).

The host's /, /notebooks or /course are never created or changed; the
namespace, and every mount in it, disappears with the server's last process.
Only the standard library is used, so it starts quickly.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import os
import subprocess
import sys
import tempfile

MODULE = "aaltohub.local.sandbox"
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_SET_NO_NEW_PRIVS = 38
HOST_ETC = "/.host/etc"
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


# --- building the spec (in the hub, pure apart from reading /etc) ------------------
def _clean(text: str) -> str:
    return " ".join(str(text).replace(":", " ").replace(",", " ").split())


def _inside(path: str, base: str) -> bool:
    return os.path.commonpath([path, base]) == base


def _python_dirs(already: list[str], private: list[str]) -> list[str]:
    """Directories the interpreter and its packages need, outermost only,
    apart from those in ``already``; never one holding a ``private`` path
    (the hub's state, the storage)."""
    cwd = os.getcwd()  # sys.path[0] of ``python -m jupyterhub``: not needed
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates += [p for p in sys.path if os.path.isabs(p) and p != cwd]
    private = [os.path.realpath(p) for p in private if p]
    kept = [os.path.realpath(p) for p in already]
    out: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates if os.path.isdir(p)}):
        if any(_inside(path, p) or _inside(p, path) for p in private):
            continue
        if not any(_inside(path, k) for k in kept + out):
            out.append(path)
    return out


def _accounts(identity, uid: int, gid: int, groups: dict[int, str]) -> dict:
    """passwd and group text: the host's entries plus this user."""
    name = identity.username
    with open("/etc/passwd", encoding="utf-8") as f:
        passwd = [
            line
            for line in f.read().splitlines()
            if line
            and line.split(":")[0] != name
            and line.split(":")[2:3] != [str(uid)]
        ]
    passwd.append(f"{name}:x:{uid}:{gid}:{_clean(identity.name)}:/notebooks:/bin/bash")
    with open("/etc/group", encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line]
    taken_gids = {int(line.split(":")[2]) for line in lines if line.count(":") >= 3}
    taken_names = {line.split(":")[0] for line in lines}
    for g, gname in groups.items():
        if g in taken_gids:
            continue
        if gname in taken_names:
            gname = f"{gname}-{g}"
        members = "" if g == gid else name
        lines.append(f"{gname}:x:{g}:{members}")
    return {
        "/etc/passwd": "\n".join(passwd) + "\n",
        "/etc/group": "\n".join(lines) + "\n",
    }


def build_spec(
    *,
    plan,
    identity,
    sources: dict[str, str],
    root: str,
    files_dir: str,
    files_root: str,
    readonly_binds: list[str],
    private: list[str],
    cwd: str,
    umask: int = 0o022,
) -> dict:
    """The JSON spec for :func:`main`; ``sources`` maps targets to host dirs."""
    if plan.uid:
        uid, gid = plan.uid, plan.gid if plan.gid is not None else identity.gid
    else:  # root-then-switch plans carry the user's ids in the environment
        uid = int(plan.env.get("NB_UID", identity.uid))
        gid = int(plan.env.get("NB_GID", identity.gid))
    if uid == 0:
        raise ValueError("refusing to run a notebook server as root")
    names = {g: n for n, g in plan.create_groups}
    groups = {gid: names.get(gid, f"users-{gid}")}
    groups.update({g: names.get(g, f"group-{g}") for g in plan.supplemental_gids})
    steps: list[dict] = []
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            steps.append({"kind": "symlink", "path": top, "to": os.readlink(top)})
        elif os.path.isdir(top):
            steps.append({"kind": "bind", "source": top, "path": top, "ro": True})
    system = [p for p in readonly_binds if os.path.isdir(p)]
    for path in system + _python_dirs(system, private):
        steps.append({"kind": "bind", "source": path, "path": path, "ro": True})
    steps.append({"kind": "bind", "source": "/etc", "path": HOST_ETC, "ro": True})
    accounts = _accounts(identity, uid, gid, groups)
    for entry in sorted(os.listdir("/etc")):
        if f"/etc/{entry}" not in accounts:
            steps.append(
                {
                    "kind": "symlink",
                    "path": f"/etc/{entry}",
                    "to": f"{HOST_ETC}/{entry}",
                }
            )
    for path, text in accounts.items():
        steps.append({"kind": "file", "path": path, "text": text, "mode": 0o644})
    for path in ("/dev", "/proc"):
        steps.append({"kind": "bind", "source": path, "path": path, "rec": True})
    steps.append({"kind": "bind", "source": "/sys", "path": "/sys", "ro": True})
    # Fresh, private temporary directories inside the sandbox's own tmpfs.
    for path in ("/tmp", "/var/tmp"):  # noqa: S108
        steps.append({"kind": "dir", "path": path, "mode": 0o1777})
    for mount in plan.mounts:
        steps.append(
            {
                "kind": "bind",
                "source": sources[mount.target],
                "path": mount.target,
                "ro": mount.read_only,
            }
        )
    if plan.files:
        steps.append(
            {"kind": "bind", "source": files_dir, "path": files_root, "ro": True}
        )
    return {
        "root": root,
        "steps": steps,
        "uid": uid,
        "gid": gid,
        "groups": sorted(set(groups) - {gid}),
        "cwd": cwd,
        "umask": umask,
    }


# --- talking to it (in the hub) -----------------------------------------------------
def read_status(fd: int) -> str:
    """Read the status pipe to EOF and close it: empty means the server was
    exec'd, else why the sandbox failed. Blocking: run it in a thread."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace").strip()


@functools.cache
def namespaces_supported() -> bool:
    """Whether servers can be sandboxed here: the process is root and a
    private mount namespace can be made (probed once, in a child).

    The one capability check: the local spawner, the demo and the tests
    all ask this.
    """
    if os.geteuid() != 0:
        return False
    probe = [sys.executable, "-m", MODULE, "--probe"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def namespaces_work() -> bool:
    """:func:`namespaces_supported`, without blocking the event loop."""
    return await asyncio.to_thread(namespaces_supported)


# --- running it (in the child, as root) ----------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def private_namespace() -> None:
    """Enter a new mount namespace from which no mount reaches the host."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _make_target(path: str, source: str | None) -> None:
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if source is not None and not os.path.isdir(source):
        open(path, "a").close()  # a file bind mount needs a file to sit on
    else:
        os.makedirs(path, 0o755, exist_ok=True)


def populate(spec: dict) -> None:
    os.umask(0o022)  # the user's umask (NB_UMASK) is for their files, not these
    root = spec["root"]
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    readonly = []
    for step in spec["steps"]:
        path = root + step["path"]
        kind = step["kind"]
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
            os.chmod(path, step["mode"])
        elif kind == "symlink":
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            os.symlink(step["to"], path)
        elif kind == "file":
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(step["text"])
            os.chmod(path, step["mode"])
        elif kind == "bind":
            _make_target(path, step["source"])
            flags = MS_BIND | (MS_REC if step.get("rec") else 0)
            _mount(step["source"], path, None, flags)
            if step.get("ro"):
                readonly.append(path)
        else:
            raise ValueError(f"unknown sandbox step {kind!r}")
    for path in readonly:
        # A bind mount is made read-only by remounting it; keep the flags
        # the source mount already has (nosuid, nodev, noexec).
        keep = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)


def enter(spec: dict) -> None:
    os.chroot(spec["root"])
    os.chdir("/")
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    if os.getuid() == 0 or os.geteuid() == 0:
        raise PermissionError("still root after dropping privileges")
    # Like allowPrivilegeEscalation: false in a pod: setuid programs (su,
    # sudo, mount) cannot give the user root back.
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.umask(spec.get("umask", 0o022))
    try:
        os.chdir(spec["cwd"])
    except OSError:
        os.chdir("/tmp")  # noqa: S108 (the sandbox's private /tmp)


def probe() -> int:
    """Exit 0 if a private namespace with a tmpfs can be made here."""
    where = tempfile.mkdtemp(prefix="aaltohub-probe-")
    try:
        private_namespace()
        _mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, "size=1k")
        _check(_libc.umount2(where.encode(), MNT_DETACH), f"umount {where}")
        return 0
    except OSError as e:
        print(f"aaltohub sandbox: mount namespaces unavailable: {e}", file=sys.stderr)
        return 1
    finally:
        os.rmdir(where)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        return probe()
    status_fd = None
    if argv and argv[0].startswith("--status-fd="):
        status_fd = int(argv.pop(0).split("=", 1)[1])
    if len(argv) < 2:
        print(
            "usage: python -m aaltohub.local.sandbox [--status-fd=N] SPEC CMD...",
            file=sys.stderr,
        )
        return 2
    cmd = argv[1:]
    try:
        with open(argv[0], encoding="utf-8") as f:
            spec = json.load(f)
        private_namespace()
        populate(spec)
        enter(spec)
        if status_fd is not None:
            os.set_inheritable(status_fd, False)  # closed by exec: "started"
        os.execvpe(cmd[0], cmd, os.environ)  # noqa: S606 (an argument list)
    except (OSError, ValueError, KeyError) as e:
        message = f"cannot prepare the server's file system view ({e})"
        print(f"aaltohub sandbox: {message}", file=sys.stderr)
        if status_fd is not None:
            os.write(status_fd, message.encode())
        return 1
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
