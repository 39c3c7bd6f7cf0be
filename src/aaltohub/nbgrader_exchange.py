"""Collect an nbgrader submission only as the student who made it.

nbgrader's exchange names a submission by its directory in the course's
``inbound``: ``<student>+<assignment>+<timestamp>[+<random>]``. Anyone who
may submit can create any such name there, e.g. ``nbgrader submit ps1
--student=student1`` run by student2, and nbgrader's ``collect`` takes the
newest one per name. Its own owner check (``ExchangeCollect.check_owner``)
asks the server's passwd, which in a pod has no students, and only warns.

The rule here decides which submissions to trust, from facts no student can
forge: the uid that owns each directory (the kernel sets it; only root can
change it). It is used on both sides:

- ``aaltohub course check`` on the storage host reports every suspicious
  submission (:func:`judge` over :func:`scan_inbound`);
- inside instructors' servers, ``VerifiedExchangeCollect`` (set as
  ``c.ExchangeFactory.collect`` by ``NbgraderHook``) skips them, names them
  in its output, and collects each student's newest trusted submission.

The rule: a submission directory must be a real directory owned by the
student it names. When the student's uid is known (``uid_of``: the map the
hub writes next to this module, the host's user database, or a map the
operator gives), it must equal the owner. When it
is not known, the owner must have submitted under no other name and the name
must have no submissions owned by another uid; otherwise nobody can tell
which one is the student's, so none of that name's disputed ones is taken.
Inside a submission every entry must belong to its owner and none may be a
symbolic link (nbgrader copies what a link points to, with the instructor's
rights).

Standalone on purpose: only the standard library and traitlets at import
time, nbgrader when the collect class is first used. ``NbgraderHook`` ships
this very file next to the course's ``nbgrader_config.py`` (as
``aaltohub_nbgrader_exchange.py``), so servers whose image lacks aaltohub run
the same rule as the hub.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from traitlets import Bool, HasTraits

#: How instructors' nbgrader_config.py names the collect class: the module is
#: the shipped copy of this file, not the aaltohub package.
SHIPPED_MODULE = "aaltohub_nbgrader_exchange"
COLLECT_CLASS = f"{SHIPPED_MODULE}.VerifiedExchangeCollect"


@dataclass(frozen=True)
class InboundEntry:
    """One name in an inbound directory, as ``lstat`` saw it."""

    name: str
    uid: int
    is_dir: bool

    @property
    def student(self) -> str | None:
        return student_of(self.name)


def student_of(name: str) -> str | None:
    """The student a submission name claims, read as nbgrader's collect reads
    it (``rsplit('+', 3)``, the first part); None if it is not one."""
    parts = name.rsplit("+", 3)
    if len(parts) < 3 or not parts[0]:
        return None
    return parts[0]


def scan_inbound(directory: str | int) -> list[InboundEntry]:
    """Every entry of an inbound directory (a path or an open directory fd),
    without following symbolic links."""
    entries = []
    with os.scandir(directory) as it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            entries.append(
                InboundEntry(entry.name, st.st_uid, stat.S_ISDIR(st.st_mode))
            )
    return entries


#: Written by the hub next to the shipped copy of this module: username ->
#: uid of everyone the hub knew could submit when the server started.
KNOWN_UIDS_FILE = "known_uids.json"


def shipped_uids(directory: str | None = None) -> dict[str, int]:
    """The hub's username -> uid map next to this module, if there is one."""
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(directory, KNOWN_UIDS_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): v
        for k, v in data.items()
        if isinstance(v, int) and not isinstance(v, bool)
    }


def nss_uid(username: str) -> int | None:
    """The uid of ``username`` in this host's user database, None if unknown."""
    try:
        return pwd.getpwnam(username).pw_uid
    except KeyError:
        return None


def judge(
    entries: Iterable[InboundEntry],
    uid_of: Callable[[str], int | None],
    require_known: bool = False,
) -> dict[str, str]:
    """Why each suspicious submission must not be collected: ``{name: why}``.

    Names that are not submissions are ignored (nbgrader ignores them too).
    """
    subs = [e for e in entries if e.student is not None]
    names_by_uid: dict[int, set[str]] = {}
    uids_by_name: dict[str, set[int]] = {}
    for e in subs:
        if e.is_dir:
            names_by_uid.setdefault(e.uid, set()).add(e.student)
            uids_by_name.setdefault(e.student, set()).add(e.uid)
    known: dict[str, int | None] = {}
    out = {}
    for e in subs:
        if e.student not in known:
            known[e.student] = uid_of(e.student)
        why = _why(e, known[e.student], names_by_uid, uids_by_name, require_known)
        if why:
            out[e.name] = why
    return out


def _why(e, want, names_by_uid, uids_by_name, require_known) -> str:
    claim = f"claims to be {e.student}'s"
    if not e.is_dir:
        return f"{claim} but is not a directory (nbgrader submit makes directories)"
    if want is not None:
        if e.uid != want:
            return f"{claim} (uid {want}) but is owned by uid {e.uid}"
        return ""
    others = sorted(names_by_uid[e.uid] - {e.student})
    if others:
        return (
            f"{claim} but its owner, uid {e.uid}, also submitted as {', '.join(others)}"
        )
    owners = sorted(uids_by_name[e.student])
    if len(owners) > 1:
        return (
            f"{claim} but {e.student}'s submissions are owned by uids"
            f" {', '.join(map(str, owners))}: at most one of them is {e.student}"
        )
    if require_known:
        return (
            f"{claim} but no uid is known for {e.student}, so its owner"
            " cannot be verified"
        )
    return ""


def foreign_content(path: str, owner: int) -> str:
    """Why the submission at ``path`` is not its owner's alone, or ''."""
    for dirpath, dirnames, filenames in os.walk(path, onerror=_raise):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, path)
            if stat.S_ISLNK(st.st_mode):
                return (
                    f"contains a symbolic link, {rel}; nbgrader would copy"
                    " what it points to, with your rights"
                )
            if st.st_uid != owner:
                return (
                    f"contains {rel}, owned by uid {st.st_uid} rather than by"
                    f" the submitter (uid {owner})"
                )
    return ""


def _raise(error: OSError) -> None:
    raise error


def _content_problem(path: str) -> str:
    try:
        return foreign_content(path, os.lstat(path).st_uid)
    except OSError as e:  # e.g. a sub-directory only its owner may read
        return f"cannot be checked: {e.strerror} ({e.filename})"


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def stage_submission(src: str, staged: str, owner: int | None, limit: int) -> str:
    """Copy the submission directory ``src`` to ``staged`` (a directory the
    student cannot reach) without following any link; why not, or ''."""
    try:
        fd = os.open(src, _DIR_NOFOLLOW)
    except OSError as e:
        return f"cannot be opened as a directory ({e.strerror}; a link?)"
    try:
        st = os.fstat(fd)
        if owner is not None and st.st_uid != owner:
            return f"changed owner since it was checked (now uid {st.st_uid})"
        pinned = f"/proc/self/fd/{fd}"  # the very directory that was checked
        size = sum(
            os.lstat(os.path.join(d, n)).st_size
            for d, _, names in os.walk(pinned)
            for n in names
        )
        if size > limit:
            return f"is {size} bytes, more than nbgrader's limit of {limit}"
        shutil.copytree(pinned, staged, symlinks=True)
    except OSError as e:
        return f"could not be copied: {e.strerror or e}"
    finally:
        os.close(fd)
    for dirpath, dirnames, filenames in os.walk(staged):
        for name in dirnames + filenames:
            if os.path.islink(os.path.join(dirpath, name)):
                rel = os.path.relpath(os.path.join(dirpath, name), staged)
                return f"contains a symbolic link, {rel}"
    return ""


class OwnerCheck(HasTraits):
    """The owner check of ``VerifiedExchangeCollect``, kept apart from
    nbgrader's class so that this module imports without nbgrader.
    Configure it as ``c.VerifiedExchangeCollect.<option>``."""

    verify_owner = Bool(
        True,
        help="""Collect a submission only if its directory is owned by the
        student it names (see aaltohub.nbgrader_exchange). Turn off only where
        the storage maps every uid to one (NFS ``all_squash``), so that owners
        tell students apart no more.""",
    ).tag(config=True)

    require_known_uid = Bool(
        False,
        help="""Skip submissions of students whose uid this server cannot look
        up (its user database, e.g. sssd). Off: such a submission is collected
        when its owner submitted under no other name and no other uid
        submitted under its name. Turn on where every student is in the
        server's user database; then the check is exact.""",
    ).tag(config=True)

    def init_src(self):
        self._seen = []  # every record nbgrader's init_src reads
        self._owners: dict[str, int] = {}  # path of a trusted record -> its owner
        super().init_src()
        if self.verify_owner:
            self._drop_untrusted()

    def _path_to_record(self, path):
        record = super()._path_to_record(path)
        self._seen.append(record)
        return record

    def _drop_untrusted(self) -> None:
        entries = scan_inbound(self.inbound_path)
        hub_uids = shipped_uids()

        def uid_of(name: str) -> int | None:
            # The hub's map first (pods have no students in their passwd).
            return hub_uids[name] if name in hub_uids else nss_uid(name)

        reasons = judge(entries, uid_of, self.require_known_uid)
        owner_of = {e.name: e.uid for e in entries}
        kept = []
        for record in self._seen:
            path = os.path.join(self.inbound_path, record["filename"])
            why = reasons.get(record["filename"]) or _content_problem(path)
            if not why:
                kept.append(record)
                self._owners[path] = owner_of.get(record["filename"])
                continue
            self.log.warning(
                "Skipped %s: it %s; it was not collected as %s's. Look at it"
                " with 'ls -land %s'; only its owner or an administrator can"
                " remove it (inbound is sticky).",
                path,
                why,
                record["username"],
                shlex.quote(path),
            )
        if len(kept) != len(self._seen):
            self.src_records = self._newest_per_student(kept)

    def do_copy(self, src, dest, log=None):
        """Copy what was checked, not what the name points to now.

        The owner of a submission can swap its entries (or the directory)
        for symbolic links between the check and the copy, and nbgrader's
        copytree follows links with the instructor's rights. So the
        directory is opened without following links, its owner checked
        again, and its contents staged into a private directory with links
        kept as links; a staged link refuses the submission. nbgrader then
        copies from the stage, with its own ignore, size and mode rules."""
        if not self.verify_owner:
            return super().do_copy(src, dest, log)
        stage = tempfile.mkdtemp(prefix="aaltohub-collect-")
        try:
            staged = os.path.join(stage, "submission")
            limit = 1000 * self.coursedir.max_dir_size
            problem = stage_submission(src, staged, self._owners.get(src), limit)
            if problem:
                self.log.warning(
                    "Skipped %s while copying: it %s; it was not collected.",
                    src,
                    problem,
                )
                return None
            return super().do_copy(staged, dest, log)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _newest_per_student(self, records):
        """nbgrader's choice (its ExchangeCollect.init_src), over the trusted
        records only: the newest per student, or with ``before_duedate`` the
        newest before the due date if there is one."""
        by_student: dict[str, list] = {}
        for record in records:
            by_student.setdefault(record["username"], []).append(record)
        chosen = []
        for group in by_student.values():
            group = self._sort_by_timestamp(group)
            if self.duedate is not None and self.before_duedate:
                early = [r for r in group if r["timestamp"] <= self.duedate]
                group = early or group
            chosen.append(group[0])
        return chosen


def _collect_class():
    # Imported here: nbgrader takes seconds to import and is optional for
    # aaltohub (the storage CLI uses only the rule above).
    from nbgrader.exchange.default.collect import ExchangeCollect

    return type(
        "VerifiedExchangeCollect",
        (OwnerCheck, ExchangeCollect),
        {
            "__module__": __name__,
            "__doc__": "nbgrader's collect step, taking only submissions made"
            " by the student they name (see OwnerCheck).",
        },
    )


def __getattr__(name: str):
    # ``VerifiedExchangeCollect`` is built on first use (PEP 562), which is
    # when nbgrader resolves c.ExchangeFactory.collect.
    if name == "VerifiedExchangeCollect":
        cls = globals()[name] = _collect_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
