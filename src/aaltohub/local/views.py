"""Per-server views of the local storage, for LocalCourseSpawner.

``namespace_view`` writes what the sandbox needs (the generated files and
the spec); the sandbox then shows the plan's mounts at the pod's paths.
``prefix_view`` builds a directory of symlinks at the pod's paths under a
per-server root, and the ``translate*`` helpers map the plan's in-server
paths onto it. The server's own log (its stdout and stderr) is
``server.log`` in the same directory, kept when the view is removed.
Blocking file work: callers run these in a thread.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

from ..storage.user_dirs import make_home
from .sandbox import build_spec, save, tools

# An absolute path between quotes, as repr() and git-config write them.
_QUOTED_PATH = re.compile(r"""(?<=['"])/[^'"\n]*(?=['"])""")


def translate(path: str, mapping: dict[str, str]) -> str:
    """Map an in-server absolute path into the per-server prefix."""
    for target in sorted(mapping, key=len, reverse=True):
        base = target.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return mapping[target].rstrip("/") + path[len(base) :]
    return path


def translate_env(value: str, mapping: dict[str, str]) -> str:
    """Translate a path or a colon-separated path list; other text is kept."""
    if not value.startswith("/"):
        return value
    return ":".join(translate(p, mapping) for p in value.split(":"))


def translate_text(text: str, mapping: dict[str, str]) -> str:
    """Translate quoted absolute paths in generated files (nbgrader config,
    gitconfig): the hooks write every value with repr() or git quoting."""
    return _QUOTED_PATH.sub(lambda m: translate(m.group(0), mapping), text)


def write_file(base: str, rel: str, text: str) -> None:
    """Write a generated file below ``base``, readable by everyone."""
    path = os.path.normpath(os.path.join(base, rel))
    if os.path.commonpath([base, path]) != base:
        raise ValueError(f"generated file {rel!r} leaves {base}")
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o644)


LOG = "server.log"
#: The log and the previous run's, kept when a view is removed.
_LOGS = (LOG, LOG + ".1")


def remove_view(server_dir: str, servers_dir: str) -> None:
    """Remove a server's view, but not its logs; never follows its
    symlinks into storage."""
    base = os.path.abspath(servers_dir)
    if os.path.commonpath([base, os.path.abspath(server_dir)]) != base:
        return
    if not os.path.isdir(server_dir) or os.path.islink(server_dir):
        if os.path.lexists(server_dir):
            os.unlink(server_dir)
        return
    for entry in os.listdir(server_dir):
        path = os.path.join(server_dir, entry)
        if entry in _LOGS:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


# --- the server's log ----------------------------------------------------------------
def open_log(path: str) -> int:
    """The server's stdout and stderr: a file only the hub's account may
    read (0600), appended to; the previous run's is kept as .1."""
    if os.path.exists(path) and os.path.getsize(path):
        os.replace(path, path + ".1")
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def cap_log(fd: int, max_bytes: int) -> bool:
    """Keep a growing log under ``max_bytes``: past it, keep its last
    quarter. The server appends (O_APPEND), so it goes on writing at the new
    end; what it writes while this runs may be lost. True if it was cut."""
    size = os.fstat(fd).st_size
    if size <= max_bytes:
        return False
    keep = max_bytes // 4
    tail = os.pread(fd, keep, size - keep)
    os.ftruncate(fd, 0)
    note = f"[aaltohub: log cut at {size} bytes, keeping the last {keep}]\n"
    os.write(fd, note.encode() + tail)
    return True


def log_tail(path: str, lines: int = 20, max_bytes: int = 8192) -> str:
    """The last lines of a server's log, for the user and the hub's log."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def prefix_view(server_dir: str, plan, sources: dict[str, str], files_root: str):
    """Symlinks at the pod's paths under ``<server_dir>/root``; returns the
    root and the mapping of in-server paths to it."""
    root = os.path.join(server_dir, "root")
    os.makedirs(root, 0o755)
    mapping = {target: root + target for target in sources}
    mapping[files_root] = root + files_root
    for target, source in sources.items():
        link = root + target
        os.makedirs(os.path.dirname(link), 0o755, exist_ok=True)
        os.symlink(source, link)
    for rel, text in plan.files.items():
        write_file(root + files_root, rel, translate_text(text, mapping))
    return root, mapping


def namespace_view(server_dir: str, plan, identity, sources, **spec_args) -> dict:
    """The generated files (byte for byte, as in a pod) and the sandbox
    spec, also saved as spec.json for the operator; returns the spec."""
    tools()  # bwrap, setpriv and env are found once, here in a thread
    files_dir = os.path.join(server_dir, "files")
    os.makedirs(files_dir, 0o755)
    for rel, text in plan.files.items():
        write_file(files_dir, rel, text)
    spec = build_spec(
        plan=plan,
        identity=identity,
        sources=sources,
        files_dir=files_dir,
        **spec_args,
    )
    save(spec, server_dir)
    return spec


@dataclass
class Launch:
    """How to start one server: the result of applying a plan locally."""

    mode: str
    server_dir: str
    log: str  # the server's stdout and stderr (see open_log)
    root_dir: str  # the server's root directory (as the server sees it)
    home: str
    cwd: str
    #: The sandbox spec (namespace mode; also in spec.json), or None to
    #: run the server directly.
    spec: dict | None = None
    env: dict[str, str] = field(default_factory=dict)
    umask: int = 0o022
    allow_root: bool = False
    default_url: str | None = None
    #: MEM_LIMIT, CPU_LIMIT, ... from the plan, as JupyterHub names them.
    resources: dict = field(default_factory=dict)


def storage_source(storage_root: str, sub_path: str) -> str:
    """The host directory of a plan mount; must exist inside the storage."""
    root = os.path.realpath(storage_root)
    path = os.path.realpath(os.path.join(root, sub_path))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"storage path {sub_path} leaves the storage root")
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"storage directory {sub_path} is missing under {root} (course"
            " directories are made with 'aaltohub course create')"
        )
    return path


def _resources(r) -> dict:
    return {
        "MEM_LIMIT": r.mem_limit,
        "MEM_GUARANTEE": r.mem_guarantee,
        "CPU_LIMIT": r.cpu_limit,
        "CPU_GUARANTEE": r.cpu_guarantee,
    }


def prepare(
    plan,
    identity,
    mode: str,
    *,
    storage_root: str,
    server_dir: str,
    servers_dir: str,
    files_root: str,
    readonly_binds: list[str],
) -> Launch:
    """Apply a plan to the local storage: the user's home (made if missing,
    like a provisioner would), then a fresh view in ``server_dir``."""
    home = plan.mount("home")
    if home is not None:
        as_root = os.geteuid() == 0
        make_home(
            storage_root,
            home.sub_path,
            identity.uid if as_root else os.geteuid(),
            identity.gid if as_root else os.getegid(),
        )
    remove_view(server_dir, servers_dir)
    os.makedirs(server_dir, 0o700, exist_ok=True)
    os.chmod(server_dir, 0o700)  # spec, generated files and log: the hub's
    sources = {m.target: storage_source(storage_root, m.sub_path) for m in plan.mounts}
    umask = int(plan.env.get("NB_UMASK", "0022"), 8) & 0o777
    home_target = home.target if home else "/tmp"  # noqa: S108 (in-server)
    common = dict(
        mode=mode,
        server_dir=server_dir,
        log=os.path.join(server_dir, LOG),
        umask=umask,
        default_url=plan.default_url,
        resources=_resources(plan.resources),
    )
    if mode == "namespace":
        spec = namespace_view(
            server_dir,
            plan,
            identity,
            sources,
            files_root=files_root,
            readonly_binds=readonly_binds,
            private=[storage_root, servers_dir],
            cwd=home_target,
            umask=umask,
        )
        return Launch(
            root_dir="/",
            home=home_target,
            spec=spec,
            cwd="/",
            env=dict(plan.env),
            **common,
        )
    root, mapping = prefix_view(server_dir, plan, sources, files_root)
    return Launch(
        root_dir=root,
        home=translate(home_target, mapping),
        cwd=root,
        env={k: translate_env(v, mapping) for k, v in plan.env.items()},
        allow_root=os.geteuid() == 0,
        **common,
    )
