"""The Course model and the validation of one course file.

Course files are read exactly as the reference (Aalto) deployment writes
them; everything it did not have is optional. Validation is strict: an
unknown or mistyped key makes the course fail closed, with a message that
names the file, the key and the likely fix.

Course files are untrusted input: a course editor is trusted less than the
deployer. Above all, ``kubespawner_override`` is an allow-list of options
that cannot weaken a server's isolation (see ``ALLOWED_OVERRIDE_KEYS`` and
``REFUSED_OVERRIDE_KEYS``), and every value is type-checked.
"""

from __future__ import annotations

import datetime
import difflib
import re
import reprlib
import string
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
ROLE_STUDENT = "student"
ROLE_INSTRUCTOR = "instructor"
ROLES = (ROLE_STUDENT, ROLE_INSTRUCTOR)
INSTRUCTOR_SUFFIX = "-instructor"
#: Default name of a course's directory group (the reference's jupyter-<slug>):
#: its members are instructors, and it owns the course files.
COURSE_GROUP_TEMPLATE = "jupyter-{slug}"

# A memory quantity as Kubernetes and KubeSpawner accept it: 512M, 2Gi, 1.5G.
_MEM_RE = re.compile(r"^[0-9]+(\.[0-9]+)?([KMGT]i?)?$")
_UMASK_RE = re.compile(r"^0?[0-7]{3}$")

# Values in messages are shortened: a course file may hold a huge or deeply
# nested value, and the full repr() would flood the log (or recurse too deep).
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 3


def _show(value) -> str:
    return _SHORT.repr(value)


class CourseError(ValueError):
    """A course file is invalid; str() is the operator-facing message."""


@dataclass(frozen=True)
class Resources:
    """CPU and memory for one role; None means "use the hub's default"."""

    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    mem_limit: str | int | None = None
    mem_guarantee: str | int | None = None


@dataclass(frozen=True)
class Cull:
    """Idle-cull limits for a course's servers, in seconds (None: hub default)."""

    inactive_timeout: int | None = None
    max_age: int | None = None


@dataclass(frozen=True)
class Course:
    """One course, validated. Immutable: a reload builds a new object."""

    slug: str
    name: str
    source: str = ""
    gid: int | None = None
    instructors: frozenset[str] = frozenset()
    students: frozenset[str] = frozenset()
    private: bool = False
    archive: bool = False
    default: bool = False
    image: Any = None
    image_instructor: Any = None
    datadir: bool = False
    datadir_readwrite: bool = False
    restrict_submit: bool = False
    coursedir_slug: str = ""
    nbgrader_config: str = ""
    student_umask: str | None = None
    create_userdata: bool = False
    extra_instructor_groups: tuple[tuple[str, int], ...] = ()
    extra_student_groups: tuple[tuple[str, int], ...] = ()
    kubespawner_override: dict = field(default_factory=dict, hash=False)
    jupyterlab: bool = True
    resources: dict[str, Resources] = field(default_factory=dict, hash=False)
    cull: Cull = Cull()
    instructor_groups: frozenset[str] = frozenset()
    student_groups: frozenset[str] = frozenset()
    description: str = ""

    @property
    def has_instructor_mode(self) -> bool:
        """Reference rule: only courses with a gid or listed instructors get
        an instructor variant (and course storage)."""
        return self.gid is not None or bool(self.instructors)

    @property
    def directory(self) -> str:
        """Name of the course's directories on storage."""
        return self.coursedir_slug or self.slug

    def profile_slug(self, role: str) -> str:
        return self.slug + (INSTRUCTOR_SUFFIX if role == ROLE_INSTRUCTOR else "")


def parse_profile_slug(profile: str) -> tuple[str, str]:
    """``intro-instructor`` -> (``intro``, instructor); ``intro`` -> student."""
    if profile.endswith(INSTRUCTOR_SUFFIX):
        return profile[: -len(INSTRUCTOR_SUFFIX)], ROLE_INSTRUCTOR
    return profile, ROLE_STUDENT


# --- field validators: each returns the clean value or raises CourseError ----
def _bool(value, key):
    if not isinstance(value, bool):
        raise CourseError(f"key '{key}' must be true or false, not {_show(value)}")
    return value


def _str(value, key):
    if not isinstance(value, str):
        raise CourseError(f"key '{key}' must be text, not {_show(value)}")
    return value


def _gid(value, key):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CourseError(
            f"key '{key}' must be a positive group id, not {_show(value)}"
        )
    return value


def _usernames(value, key):
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple | set) or not all(
        isinstance(u, str) for u in value
    ):
        raise CourseError(f"key '{key}' must be a list of usernames")
    return frozenset(u.strip() for u in value if u.strip())


def _groups(value, key):
    names = _usernames(value, key)
    return names


def _dirslug(value, key):
    value = _str(value, key)
    if not SLUG_RE.match(value):
        raise CourseError(
            f"key '{key}' must be a directory name of lowercase letters, digits,"
            f" '-' and '_' (no '/', no '..'), not {_show(value)}"
        )
    return value


def _umask(value, key):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777:
        # YAML 1.1 reads an unquoted 0007 as the octal number 7.
        return f"{value:04o}"
    if isinstance(value, str) and _UMASK_RE.match(value):
        return value.rjust(4, "0")
    raise CourseError(f"key '{key}' must be an octal umask such as '0007'")


def _extra_groups(value, key):
    if value is None:
        return ()
    out = []
    for item in value if isinstance(value, list) else [None]:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int)
        ):
            raise CourseError(
                f"key '{key}' must be a list of [group-name, gid] pairs,"
                f" e.g. [[jupyter-other, 70123]]; got {_show(value)}"
            )
        out.append((item[0], item[1]))
    return tuple(out)


def _image(value, key):
    if isinstance(value, str) and value:
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        # a date, not a datetime: the two cannot be compared with each other
        and type(value[1]) is datetime.date
    ):
        return (value[0], value[1])
    raise CourseError(
        f"key '{key}' must be an image name, an alias such as DEFAULT, or"
        f" [series, YYYY-MM-DD]; got {_show(value)}"
    )


def _number(value, key, what):
    if value is None:
        return None
    # 0 <= value < inf also refuses NaN and infinity (int(inf) would raise).
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < float("inf")
    ):
        raise CourseError(f"{key}: '{what}' must be a non-negative number")
    return value


def _memory(value, key, what):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _MEM_RE.match(value):
        return value
    raise CourseError(f"{key}: '{what}' must be bytes or a size such as 2G or 512Mi")


_RESOURCE_KEYS = ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")


def _resources(value, key):
    if not isinstance(value, dict):
        raise CourseError(f"key '{key}' must map roles (student, instructor) to limits")
    out = {}
    for role, spec in value.items():
        where = f"key '{key}.{role}'"
        if role not in ROLES:
            raise CourseError(f"{where}: unknown role; use one of {list(ROLES)}")
        if not isinstance(spec, dict):
            raise CourseError(f"{where} must be a mapping of {list(_RESOURCE_KEYS)}")
        _reject_unknown(spec, _RESOURCE_KEYS, f"{key}.{role}")
        out[role] = Resources(
            cpu_limit=_number(spec.get("cpu_limit"), where, "cpu_limit"),
            cpu_guarantee=_number(spec.get("cpu_guarantee"), where, "cpu_guarantee"),
            mem_limit=_memory(spec.get("mem_limit"), where, "mem_limit"),
            mem_guarantee=_memory(spec.get("mem_guarantee"), where, "mem_guarantee"),
        )
    return out


def _cull(value, key):
    if not isinstance(value, dict):
        raise CourseError(f"key '{key}' must be a mapping of inactive_timeout, max_age")
    _reject_unknown(value, ("inactive_timeout", "max_age"), key)
    where = f"key '{key}'"
    timeout = _number(value.get("inactive_timeout"), where, "inactive_timeout")
    max_age = _number(value.get("max_age"), where, "max_age")
    return Cull(
        inactive_timeout=None if timeout is None else int(timeout),
        max_age=None if max_age is None else int(max_age),
    )


# --- kubespawner_override: what a course may ask of KubeSpawner ---------------
# KubeSpawner applies a profile's overrides with setattr() on the spawner, so
# an open mapping would let a course file set anything: uid 0, privileged,
# hostPath volumes, the hub's API URL. Only the keys below are accepted.

#: Never accepted from a course file, even if the deployer lists them in
#: ``c.CourseCatalog.extra_override_keys``: they change who the server runs
#: as, what it may do or see, what runs at start, or how it reaches the hub.
REFUSED_OVERRIDE_KEYS = frozenset(
    {
        # identity, security context, privileges
        *("uid", "gid", "fs_gid", "supplemental_gids", "privileged"),
        *("allow_privilege_escalation", "container_security_context"),
        "pod_security_context",
        # raw pod and container spec: host namespaces, sidecars
        *("extra_pod_config", "extra_container_config", "extra_containers"),
        # volumes and claims (a claim name can be another user's home)
        *("volumes", "volume_mounts", "pvc_name_template", "remember_pvc_name"),
        *("storage_pvc_ensure", "storage_class", "storage_capacity"),
        *("storage_access_modes", "storage_selector", "storage_extra_labels"),
        *("storage_extra_annotations", "delete_pvc", "storage_claim"),
        # service account, init containers, lifecycle hooks, what runs
        *("service_account", "automount_service_account_token"),
        *("init_containers", "lifecycle_hooks", "cmd", "args"),
        "disable_user_config",
        # how the server reaches the hub, and with which rights
        *("hub_connect_ip", "hub_connect_port", "hub_connect_url", "env_keep"),
        *("oauth_roles", "oauth_client_allowed_scopes", "server_token_scopes"),
        *("ip", "port", "pod_connect_ip", "ssl_alt_names", "get_pod_url"),
        *("ssl_alt_names_include_local", "services_enabled"),
        *("secret_name_template", "secret_mount_path"),
        # code and templates that run in the hub
        *("pre_spawn_hook", "post_stop_hook", "modify_pod_hook"),
        *("after_pod_created_hook", "auth_state_hook", "progress_ready_hook"),
        *("options_form", "options_from_form", "apply_user_options"),
        *("profile_list", "profile_form_template", "group_overrides"),
        *("additional_profile_form_template_paths", "general_profiles", "hooks"),
        *("identity_class", "files_root", "max_user_options_size"),
        # namespace, names and labels the hub finds its pods by, the API
        *("namespace", "enable_user_namespaces", "user_namespace_template"),
        *("user_namespace_labels", "user_namespace_annotations"),
        *("pod_name_template", "pod_name_course_template", "dns_name_template"),
        *("component_label", "common_labels", "slug_scheme"),
        *("handle_legacy_names", "k8s_api_host", "k8s_api_ssl_ca_cert"),
        *("k8s_api_verify_ssl", "k8s_api_threadpool_workers"),
        *("k8s_api_request_timeout", "k8s_api_request_retry_timeout"),
    }
)
_REFUSED_WHY = (
    "a course file cannot change uid, gid, security context, privileges, host"
    " namespaces, volumes, service account, init containers, lifecycle hooks,"
    " what the server runs or how it reaches the hub; remove the key (the"
    " deployer sets these in the hub's configuration)"
)
# Keys of the reference deployment's course files, and where they went.
_OVERRIDE_HINTS = {
    "cull_inactive_time": "use the course key 'cull' ({inactive_timeout: SECONDS})",
    "cull_max_age": "use the course key 'cull' ({max_age: SECONDS})",
    "x_jupyter_enable_lab": "use the course key 'jupyterlab' (true or false)",
    "course_slug": "the hub sets it from the name of the course file",
    "as_instructor": "the hub sets it from the user's role",
}

# Fields KubeSpawner fills into environment values, labels and annotations
# (its _expand_user_properties); JupyterHub's for default_url.
KUBE_TEMPLATE_FIELDS = frozenset(
    {
        *("userid", "username", "unescaped_username", "safe_username"),
        *("escaped_username", "servername", "unescaped_servername"),
        *("safe_servername", "escaped_servername", "user_server"),
        *("safe_user_server", "escaped_user_server", "hubnamespace"),
        *("pod_name", "pvc_name", "namespace"),
    }
)
URL_TEMPLATE_FIELDS = frozenset({"username", "base_url"})

# A Kubernetes label, annotation or resource key: [DNS-prefix/]name.
_K8S_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
    r"[A-Za-z0-9])?$"
)
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|[KMGTPE]i|[mkMGTPE])?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Label keys KubeSpawner and z2jh select pods by (network policies, the hub).
_RESERVED_LABELS = frozenset({"app", "component", "heritage", "release", "chart"})
# Key prefixes of Kubernetes (incl. AppArmor and seccomp annotations), z2jh
# and aaltohub (its file annotations).
_KUBE_DOMAINS = ("kubernetes.io", "k8s.io", "hub.jupyter.org", "aaltohub")
# Environment variables the hub decides: identity (NB_*), credentials
# (JUPYTERHUB_*), configuration the hooks write (JUPYTER_*, GIT_*), and what
# runs when an image starts as root before switching to the user.
_ENV_HUB_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "ENV", "BASH_ENV", "IFS"}
    | {"SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "GRANT_SUDO"}
    | {"COURSEDATA", "CREATE_USERDATA"}
)
_ENV_HUB_PREFIXES = (
    *("NB_", "JUPYTERHUB_", "JPY_", "JUPYTER_", "GIT_", "LD_", "PYTHON"),
    *("BASH_FUNC_", "CHOWN_", "SUDO_", "AALTOHUB_", "AALTO_NB_", "DOCKER_STACKS_"),
)
_OV = "key 'kubespawner_override'"


def _reserved(key: str, domains=_KUBE_DOMAINS, names=_RESERVED_LABELS) -> bool:
    prefix = key.rpartition("/")[0]
    if not prefix:
        return key in names
    return any(prefix == d or prefix.endswith("." + d) for d in domains)


def _template(value: str, where: str, fields: frozenset) -> str:
    """Allow only plain ``{field}`` names KubeSpawner fills in: no attribute
    or index lookups, which would reach into the hub's objects."""
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError:
        raise CourseError(
            f"{where}: {_show(value)} has an unmatched brace; write '{{{{' or"
            " '}}' for a literal one"
        ) from None
    for _, name, spec, conversion in parsed:
        if name is not None and (name not in fields or spec or conversion):
            known = ", ".join("{" + f + "}" for f in sorted(fields))
            raise CourseError(
                f"{where}: {_show(value)} may use only {known}, not '{{{name}}}'"
            )
    return value


def _text_map(value, name, check_key, template=True) -> dict[str, str]:
    """A mapping of keys to text, each key checked by ``check_key``."""
    where = f"key 'kubespawner_override.{name}'"
    if not isinstance(value, dict):
        raise CourseError(f"{where} must be a mapping of names to text")
    for key, item in value.items():
        check_key(key, where)
        if not isinstance(item, str):
            raise CourseError(
                f"{where}: the value of {_show(key)} must be text, not"
                f" {_show(item)}; quote it: '{item}'"
            )
        if template:
            _template(item, f"{where}: the value of '{key}'", KUBE_TEMPLATE_FIELDS)
    return dict(value)


def _kube_key(domains=_KUBE_DOMAINS, names=_RESERVED_LABELS):
    def check(key, where):
        if not isinstance(key, str) or not _K8S_KEY_RE.match(key):
            raise CourseError(
                f"{where}: {_show(key)} is not a valid Kubernetes key"
                " (name or prefix/name, e.g. example.org/team)"
            )
        if _reserved(key, domains, names):
            raise CourseError(
                f"{where}: '{key}' is reserved for the hub and Kubernetes;"
                " use a key of your own, e.g. example.org/team"
            )

    return check


def _env_name(key, where):
    if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
        raise CourseError(
            f"{where}: {_show(key)} is not a valid variable name"
            " (letters, digits and '_', not starting with a digit)"
        )
    if key.upper() in _ENV_HUB_NAMES or key.upper().startswith(_ENV_HUB_PREFIXES):
        raise CourseError(
            f"{where}: variable '{key}' is set by the hub: a course file cannot"
            " change the user's identity, the hub's credentials or what runs"
            " when the server starts; use a name of your own"
        )


def _ov_image(value, name):
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 512
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise CourseError(
            f"{_OV}: '{name}' must be an image name such as"
            f" quay.io/jupyter/scipy-notebook:2025-01-06, not {_show(value)}"
        )
    return value


def _ov_url(value, name):
    if (
        not isinstance(value, str)
        or "://" in value
        or value.startswith("//")
        or "\\" in value
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise CourseError(
            f"{_OV}: '{name}' must be a path on the server such as"
            f" /lab/tree/notebooks, not {_show(value)}"
        )
    return _template(value, f"{_OV}: '{name}'", URL_TEMPLATE_FIELDS)


def _ov_resources(value, name):
    where = f"key 'kubespawner_override.{name}'"
    if not isinstance(value, dict):
        raise CourseError(f"{where} must map resource names to quantities")
    for key, amount in value.items():
        _kube_key(domains=(), names=())(key, where)
        if not (
            (isinstance(amount, str) and _QUANTITY_RE.match(amount))
            or (
                isinstance(amount, int | float)
                and not isinstance(amount, bool)
                and 0 <= amount < float("inf")
            )
        ):
            raise CourseError(
                f"{where}: '{key}' must be a quantity such as 1, 500m or 2Gi,"
                f" not {_show(amount)}"
            )
    return dict(value)


_TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _ov_tolerations(value, name):
    path = f"kubespawner_override.{name}"
    where = f"key '{path}'"
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise CourseError(
            f"{where} must be a list of tolerations, e.g."
            " [{key: example.org/gpu, operator: Exists, effect: NoSchedule}]"
        )
    for item in value:
        _reject_unknown(item, _TOLERATION_KEYS, path)
        # Without a key a toleration tolerates every taint, e.g. the
        # control plane's; Kubernetes' own taints are not a course's either.
        # (hub.jupyter.org/dedicated stays allowed: the list replaces the
        # hub's, and z2jh's user nodes need it repeated.)
        if not isinstance(item.get("key"), str) or not item["key"]:
            raise CourseError(f"{where}: each toleration needs a 'key'")
        _kube_key(domains=("kubernetes.io", "k8s.io"), names=())(item["key"], where)
        checks = (
            ("operator", ("Equal", "Exists")),
            ("effect", _TOLERATION_EFFECTS),
        )
        for field_name, choices in checks:
            if field_name in item and item[field_name] not in choices:
                raise CourseError(
                    f"{where}: '{field_name}' must be one of {list(choices)},"
                    f" not {_show(item[field_name])}"
                )
        if "value" in item and not isinstance(item["value"], str):
            raise CourseError(f"{where}: 'value' must be text; quote it")
        seconds = item.get("tolerationSeconds")
        if seconds is not None and (
            isinstance(seconds, bool) or type(seconds) is not int
        ):
            raise CourseError(f"{where}: 'tolerationSeconds' must be whole seconds")
    return [dict(t) for t in value]


def _ov_number(value, name):
    return _number(value, _OV, name)


def _ov_memory(value, name):
    return _memory(value, _OV, name)


#: kubespawner_override keys a course file may set, each with its check.
#: None of them can weaken isolation; the deployer may allow more with
#: ``c.CourseCatalog.extra_override_keys``.
OVERRIDE_VALIDATORS = {
    "image": _ov_image,
    "cpu_limit": _ov_number,
    "cpu_guarantee": _ov_number,
    "mem_limit": _ov_memory,
    "mem_guarantee": _ov_memory,
    "extra_resource_limits": _ov_resources,
    "extra_resource_guarantees": _ov_resources,
    # z2jh's user-node label is the hub's; kubernetes.io/hostname is fine
    "node_selector": lambda v, n: _text_map(
        v, n, _kube_key(domains=("hub.jupyter.org", "aaltohub"), names=()), False
    ),
    "tolerations": _ov_tolerations,
    "extra_labels": lambda v, n: _text_map(v, n, _kube_key()),
    "extra_annotations": lambda v, n: _text_map(v, n, _kube_key()),
    "environment": lambda v, n: _text_map(v, n, _env_name),
    "default_url": _ov_url,
}
ALLOWED_OVERRIDE_KEYS = frozenset(OVERRIDE_VALIDATORS)


def override_key_refused(key: str) -> bool:
    """True for keys no course file may set, whatever the deployer allows."""
    return key in REFUSED_OVERRIDE_KEYS or key.startswith("_")


def _override(value, key, extra_keys: Collection[str] = ()):
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CourseError(f"key '{key}' must be a mapping of KubeSpawner options")
    out = {}
    for name, item in value.items():
        check = OVERRIDE_VALIDATORS.get(name)
        if check is not None:
            out[name] = check(item, name)
            continue
        if override_key_refused(name):
            why = _REFUSED_WHY
        elif name in extra_keys:
            out[name] = item  # the deployer's decision; plain YAML data
            continue
        else:
            why = _OVERRIDE_HINTS.get(name) or (
                f"a course file may set {', '.join(sorted(OVERRIDE_VALIDATORS))};"
                " the deployer can allow a key with c.CourseCatalog.extra_override_keys"
            )
        raise CourseError(f"{key} key {_show(name)} is not allowed: {why}")
    return out


# key -> validator. The first block is the reference deployment's vocabulary.
FIELDS = {
    "name": _str,
    "gid": _gid,
    "instructors": _usernames,
    "students": _usernames,
    "private": _bool,
    "archive": _bool,
    "default": _bool,
    "image": _image,
    "image_instructor": _image,
    "datadir": _bool,
    "datadir_readwrite": _bool,
    "restrict_submit": _bool,
    "coursedir_slug": _dirslug,
    "nbgrader_config": _str,
    "student_umask": _umask,
    "create_userdata": _bool,
    "extra_instructor_groups": _extra_groups,
    "extra_student_groups": _extra_groups,
    "kubespawner_override": _override,
    "jupyterlab": _bool,
    # aaltohub additions
    "resources": _resources,
    "cull": _cull,
    "instructor_groups": _groups,
    "student_groups": _groups,
    "description": _str,
}
ROSTER_FIELDS = ("students", "instructors")


def _reject_unknown(data: dict, allowed, where: str) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), list(allowed), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise CourseError(
                f"key '{where + '.' if where else ''}{key}' is unknown{suggestion}"
            )


def build_course(
    slug: str,
    data: Any,
    roster: Any = None,
    source: str = "",
    roster_source: str = "",
    *,
    extra_override_keys: Collection[str] = (),
) -> Course:
    """Validate parsed YAML (and an optional roster) into a Course.

    ``extra_override_keys`` are kubespawner_override keys the deployer allows
    beyond ``ALLOWED_OVERRIDE_KEYS`` (``c.CourseCatalog.extra_override_keys``);
    ``REFUSED_OVERRIDE_KEYS`` stay refused. Raises CourseError whose message
    starts with the file name.
    """
    where = source or f"{slug}.yaml"
    if not SLUG_RE.match(slug) or slug.endswith(INSTRUCTOR_SUFFIX):
        raise CourseError(
            f"course file {where}: the file name must be <slug>.yaml with a slug of"
            " lowercase letters, digits, '-' and '_', not ending in -instructor"
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CourseError(f"course file {where}: expected a mapping of course keys")
    values: dict[str, Any] = {}
    try:
        _reject_unknown(data, FIELDS, "")
        for key, value in data.items():
            if key == "kubespawner_override":
                values[key] = _override(value, key, extra_override_keys)
            else:
                values[key] = FIELDS[key](value, key)
    except CourseError as e:
        raise CourseError(f"course file {where}: {e}") from None
    if roster is not None:
        rwhere = roster_source or f"{slug}-users.yaml"
        if not isinstance(roster, dict):
            raise CourseError(f"roster file {rwhere}: expected students:/instructors:")
        try:
            _reject_unknown(roster, ROSTER_FIELDS, "")
            for key in ROSTER_FIELDS:
                if key in roster:
                    values[key] = values.get(key, frozenset()) | _usernames(
                        roster[key], key
                    )
        except CourseError as e:
            raise CourseError(f"roster file {rwhere}: {e}") from None
    values.setdefault("name", slug)
    values.setdefault("coursedir_slug", slug)
    return Course(slug=slug, source=where, **values)
