"""SpawnContext (the inputs) and SpawnPlan (the decision) of one spawn.

Plain data: hooks fill a plan from a context; adapters (kube.py, local/)
turn the plan into a pod or a process. Nothing here imports kubespawner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .access import Enrolment, Viewer
from .course import ROLE_INSTRUCTOR, Course, Resources
from .identity.base import Identity
from .storage.paths import StoragePaths

#: Storage volume that every course mount lives on (one NFS claim).
NFS_VOLUME = "jupyter-nfs"


@dataclass(frozen=True)
class SpawnContext:
    """Everything a hook may look at. Built fresh for every spawn."""

    viewer: Viewer
    identity: Identity
    #: Where storage lives and where it appears (the hub's c.StoragePaths).
    paths: StoragePaths
    course: Course | None = None
    role: str = "student"
    #: What the user is in the course (access.enrolment: roster, groups,
    #: instructors); NONE for a general profile or a visitor.
    enrolment: Enrolment = Enrolment.NONE
    server_name: str = ""
    image: str = ""
    #: Name of the course's directory group (CourseCatalog's template).
    course_group: str = ""
    #: Directory inside the server where plan.files appear.
    files_root: str = "/etc/aaltohub"
    #: The spawner's configured defaults (resources, env) before any course.
    defaults: dict[str, Any] = field(default_factory=dict)
    #: Providers that hooks may use for I/O (e.g. "quota"), injected by the adapter.
    providers: dict[str, Any] = field(default_factory=dict)

    @property
    def username(self) -> str:
        return self.identity.username

    @property
    def as_instructor(self) -> bool:
        return self.course is not None and self.role == ROLE_INSTRUCTOR

    @property
    def enrolled(self) -> bool:
        """On the course as a student or an instructor, by any route."""
        return self.course is not None and self.enrolment.enrolled


@dataclass
class Mount:
    """A directory from a volume, at a path inside the server."""

    target: str
    sub_path: str
    read_only: bool = False
    volume: str = NFS_VOLUME
    #: What the mount is for, e.g. "home", "course-files"; adapters and docs
    #: refer to mounts by this name.
    purpose: str = ""


@dataclass
class SpawnPlan:
    """What the user's server should be. Hooks add to it; adapters apply it."""

    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None
    supplemental_gids: list[int] = field(default_factory=list)
    #: Start as root so the image's start script switches to NB_UID/NB_GID.
    start_as_root: bool = False
    #: Groups the start script should create, as (name, gid).
    create_groups: list[tuple[str, int]] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    #: Files delivered into the server byte for byte: relative path -> text.
    files: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    default_url: str | None = None
    working_dir: str | None = None
    #: Idle-cull limits in seconds; kept in spawner state across restarts.
    cull_inactive_timeout: int | None = None
    cull_max_age: int | None = None
    #: Short user-facing notes, e.g. a quota warning for the spawn page.
    notices: list[str] = field(default_factory=list)

    def add_mount(
        self, target: str, sub_path: str, read_only: bool, purpose: str
    ) -> None:
        self.mounts.append(Mount(target, sub_path, read_only, purpose=purpose))

    def add_group(self, gid: int, name: str | None = None) -> None:
        """Add a supplementary group once, keeping order."""
        if gid not in self.supplemental_gids and gid != self.gid:
            self.supplemental_gids.append(gid)
        if name and (name, gid) not in self.create_groups:
            self.create_groups.append((name, gid))

    def mount(self, purpose: str) -> Mount | None:
        return next((m for m in self.mounts if m.purpose == purpose), None)
