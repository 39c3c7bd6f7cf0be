"""Run one single-user server at the pod's paths in a bubblewrap sandbox.

LocalCourseSpawner in ``namespace`` mode (the hub runs as root) starts each
server as ``bwrap OPTIONS -- setpriv IDS -- env --chdir=HOME CMD...``
(:func:`command`), an argument list built from a JSON spec
(:func:`build_spec`). bubblewrap (the Debian package ``bubblewrap``)

1. unshares mount, pid, ipc and uts namespaces (the network namespace is
   the host's unless ``share_net`` is false: the proxy must reach the
   server on 127.0.0.1:<port>), and dies with the hub (``--die-with-parent``);
2. builds the server's root on a fresh tmpfs: the system and Python
   directories read-only at their own paths, /etc as symlinks to the host's
   plus a generated passwd and group, a private /dev with its own /dev/shm,
   /proc of the new pid namespace, /sys read-only, private /tmp and
   /var/tmp, and the plan's storage mounts at /notebooks, /course,
   /coursedata, /srv/nbgrader/exchange and /etc/aaltohub, read-only where
   the plan says so;
3. sets no_new_privs (no setuid escalation), starts a new session, and
   keeps only CAP_SETUID, CAP_SETGID and CAP_SETPCAP for ``setpriv``
   (util-linux), which takes the user's uid, gid and groups and empties
   every capability set. bwrap's own ``--uid`` needs a user namespace, and
   in one the user's files would belong to root on the host. (A spec
   with ``userns``, for isolated grading, is the exception: started by an
   unprivileged process, bwrap maps the spec's uid to that process's uid
   in a user namespace, and there is no setpriv.)

``env --chdir`` then enters the home as the user (root may not: homes are
0700, and NFS squashes root) and execs CMD. The umask is the hub's to set
(Popen's ``umask``): bwrap passes it on. The host's /, /notebooks or
/course are never created or changed; every mount and process of the
sandbox disappears with it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys

HOST_ETC = "/.host/etc"
SHM_SIZE = 64 * 1024 * 1024  # a container's default /dev/shm
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: What setpriv needs, and no more: it drops all of them with root's uid.
_KEEP_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: 'apt-get install bubblewrap')"


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


def _ids(plan, identity) -> tuple[int, int, dict[int, str]]:
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
    return uid, gid, groups


def _system_steps(readonly_binds: list[str], private: list[str]) -> list[dict]:
    """The host's programs and libraries, read-only at their own paths."""
    steps: list[dict] = []
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            steps.append({"kind": "symlink", "path": top, "to": os.readlink(top)})
        elif os.path.isdir(top):
            steps.append({"kind": "bind", "source": top, "path": top, "ro": True})
    # Private temporary directories first: a Python directory below /tmp
    # must not create /tmp with the wrong mode.
    for path in ("/tmp", "/var/tmp"):  # noqa: S108
        steps.append({"kind": "dir", "path": path, "mode": 0o1777})
    system = [p for p in readonly_binds if os.path.isdir(p)]
    for path in system + _python_dirs(system, private):
        steps.append({"kind": "bind", "source": path, "path": path, "ro": True})
    return steps


def _private_dev(shm_size: int) -> list[dict]:
    """/dev with no host devices but null, zero, random, tty and its own
    pts, a /dev/shm of its own (never the host's, nor another server's),
    and /proc of the sandbox's pid namespace."""
    shm = "/dev/shm"  # noqa: S108 (a fresh tmpfs, not the host's)
    return [
        {"kind": "dev", "path": "/dev"},
        {"kind": "tmpfs", "path": shm, "mode": 0o1777, "size": shm_size},
        {"kind": "proc", "path": "/proc"},
    ]


def build_spec(
    *,
    plan,
    identity,
    sources: dict[str, str],
    files_dir: str,
    files_root: str,
    readonly_binds: list[str],
    private: list[str],
    cwd: str,
    umask: int = 0o022,
    share_net: bool = True,
) -> dict:
    """The JSON spec for :func:`command`; ``sources`` maps targets to host
    dirs. ``share_net=False`` gives the server no network at all (for
    isolated grading jobs; the hub could not reach a notebook server)."""
    uid, gid, groups = _ids(plan, identity)
    steps = _system_steps(readonly_binds, private)
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
    steps += _private_dev(SHM_SIZE)
    steps.append({"kind": "bind", "source": "/sys", "path": "/sys", "ro": True})
    for mount in plan.mounts:
        source = sources[mount.target]
        steps.append(
            {
                "kind": "bind",
                "source": source,
                "path": mount.target,
                "ro": mount.read_only,
            }
        )
    if plan.files:
        steps.append(
            {"kind": "bind", "source": files_dir, "path": files_root, "ro": True}
        )
    return {
        "steps": steps,
        "uid": uid,
        "gid": gid,
        "groups": sorted(set(groups) - {gid}),
        "cwd": cwd,
        "umask": umask,
        "share_net": share_net,
    }


def save(spec: dict, directory: str) -> str:
    """Write the spec's generated files (passwd, group) below ``directory``,
    where bwrap binds them from, and the spec as spec.json; returns its
    path. Blocking: run it in a thread."""
    for step in spec["steps"]:
        if step["kind"] == "file":
            source = os.path.join(directory, "generated" + step["path"])
            os.makedirs(os.path.dirname(source), 0o755, exist_ok=True)
            with open(source, "w", encoding="utf-8") as f:
                f.write(step["text"])
            os.chmod(source, step["mode"])
            step["source"] = source
    path = os.path.join(directory, "spec.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    return path


# --- the command (in the hub) ------------------------------------------------------
@functools.cache
def tools() -> dict[str, str]:
    """Absolute paths of bwrap, setpriv (util-linux) and env (coreutils),
    looked up once (the first call searches PATH: call it in a thread)."""
    found = {name: shutil.which(name) for name in ("bwrap", "setpriv", "env")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    return found


def _step_args(step: dict) -> list[str]:
    kind, path = step["kind"], step["path"]
    if kind == "bind":
        return ["--ro-bind" if step.get("ro") else "--bind", step["source"], path]
    if kind == "file":  # after save(): a generated file, read-only
        return ["--ro-bind", step["source"], path]
    if kind == "symlink":
        return ["--symlink", step["to"], path]
    if kind == "dir":
        return ["--perms", f"{step['mode']:o}", "--dir", path]
    if kind == "tmpfs":
        return [
            "--perms",
            f"{step['mode']:o}",
            "--size",
            str(step["size"]),
            "--tmpfs",
            path,
        ]
    if kind == "dev":  # null, zero, random, tty, pts of its own; no host devices
        return ["--dev", path]
    if kind == "proc":  # the sandbox's own processes only
        return ["--proc", path]
    raise ValueError(f"unknown sandbox step {kind!r}")


def _mount_args(steps: list[dict]) -> list[str]:
    """bwrap options for the steps, in order. bwrap, run by root, creates
    the missing parents of a mount point 0700 (its parent mode follows the
    op's permissions, 0 for a bind), which the user could not enter: each
    parent is made first with ``--dir`` (0755)."""
    args: list[str] = []
    made = {"/"}
    for step in steps:
        parts = step["path"].strip("/").split("/")[:-1]
        for i in range(len(parts)):
            parent = "/" + "/".join(parts[: i + 1])
            if parent not in made:
                args += ["--dir", parent]
                made.add(parent)
        args += _step_args(step)
        made.add(step["path"])
    return args


def command(spec: dict, cmd: list[str], info_fd: int | None = None) -> list[str]:
    """The argument list that runs ``cmd`` in the sandbox of ``spec``.

    With ``info_fd``, bwrap writes ``{"child-pid": N, ...}`` to it: N (its
    pid 1, which leads the sandbox's session) is whom to signal.
    """
    if not cmd or "=" in cmd[0]:  # env would take NAME=VALUE for a variable
        raise ValueError(f"cannot run {cmd[:1]!r} in the sandbox")
    found = tools()
    args = [found["bwrap"], "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not spec.get("share_net", True):
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if spec.get("userns"):
        return [*args, *_userns_args(spec, info_fd), found["env"], *cmd]
    for cap in _KEEP_CAPS:
        args += ["--cap-add", cap]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    args += _mount_args(spec["steps"])
    groups = spec["groups"]
    args += ["--chdir", "/", "--", found["setpriv"]]
    args += [f"--reuid={spec['uid']}", f"--regid={spec['gid']}"]
    args.append(
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    )
    args += ["--inh-caps=-all", "--bounding-set=-all", "--"]
    return [*args, found["env"], f"--chdir={spec['cwd']}", *cmd]


def _userns_args(spec: dict, info_fd: int | None) -> list[str]:
    """A spec with ``userns`` (run by an unprivileged caller, e.g. the
    grader): a user namespace maps the spec's uid and gid to the caller's,
    with no capabilities and no further namespaces; no setpriv (and no
    supplementary groups: a user namespace cannot set them). The caller
    must not run it as root: the sandbox's host uid would be root's."""
    args = ["--unshare-user", "--disable-userns"]
    args += ["--uid", str(spec["uid"]), "--gid", str(spec["gid"])]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    # Its root (a tmpfs) would belong to the sandbox's uid: read-only, so
    # the size-limited tmpfs mounts stay its only writable places.
    args += [*_mount_args(spec["steps"]), "--remount-ro", "/"]
    return [*args, "--chdir", spec["cwd"], "--"]


def read_info(fd: int) -> int | None:
    """Read bwrap's --info-fd to EOF and close it; the sandbox's pid 1, or
    None if bwrap failed first (its log says why). Blocking: in a thread."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return int(json.loads(b"".join(chunks))["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


# --- can servers be sandboxed here (probed once) ------------------------------------
@functools.cache
def sandbox_problem() -> str:
    """Why servers cannot be sandboxed here, or "" if they can: the process
    is root and a minimal sandbox, built like a server's, runs ``true`` as
    nobody (probed once, in a child)."""
    if os.geteuid() != 0:
        return "the hub does not run as root"
    steps = [*_system_steps(["/usr"], []), *_private_dev(1 << 20)]
    spec = {"steps": steps, "uid": 65534, "gid": 65534, "groups": [], "cwd": "/"}
    try:
        probe = command(spec, ["true"])
        done = subprocess.run(probe, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()
        return f"bubblewrap cannot make a sandbox here: {error or done.returncode}"
    return ""


def namespaces_supported() -> bool:
    """Whether servers can be sandboxed here: root, and bubblewrap works.

    The one capability check: the local spawner, the demo and the tests
    all ask this (or :func:`sandbox_problem`, for the reason).
    """
    return not sandbox_problem()


async def namespaces_work() -> bool:
    """:func:`namespaces_supported`, without blocking the event loop."""
    return await asyncio.to_thread(namespaces_supported)
