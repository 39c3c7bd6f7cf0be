"""What a course file may ask of KubeSpawner: the kubespawner_override
allow-list.

KubeSpawner applies a profile's overrides with setattr() on the spawner, so
an open mapping would let a course file (written by a less trusted course
editor) set anything: uid 0, privileged, hostPath volumes, the hub's API
URL. Only the keys in :data:`ALLOWED_OVERRIDE_KEYS` are accepted, each with
a type check; :data:`REFUSED_OVERRIDE_KEYS` are refused even when the
deployer widens the list with ``c.CourseCatalog.extra_override_keys``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection

from .course_values import CourseError, memory, number, reject_unknown, show

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
# Keys of the reference deployment's overrides that the hub itself sets.
_OVERRIDE_HINTS = {
    "course_slug": "the hub sets it from the name of the course file",
    "as_instructor": "the hub sets it from the user's role",
}
#: Keys of the reference (Aalto) deployment's kubespawner_override that are
#: not KubeSpawner options but course settings: read with Aalto's meaning and
#: moved to the course (cull limits in seconds, the JupyterLab switch).
AALTO_OVERRIDE_KEYS = {
    "cull_inactive_time": "inactive_timeout",
    "cull_max_age": "max_age",
    "x_jupyter_enable_lab": "jupyterlab",
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
            f"{where}: {show(value)} has an unmatched brace; write '{{{{' or"
            " '}}' for a literal one"
        ) from None
    for _, name, spec, conversion in parsed:
        if name is not None and (name not in fields or spec or conversion):
            known = ", ".join("{" + f + "}" for f in sorted(fields))
            raise CourseError(
                f"{where}: {show(value)} may use only {known}, not '{{{name}}}'"
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
                f"{where}: the value of {show(key)} must be text, not"
                f" {show(item)}; quote it: '{item}'"
            )
        if template:
            _template(item, f"{where}: the value of '{key}'", KUBE_TEMPLATE_FIELDS)
    return dict(value)


def _kube_key(domains=_KUBE_DOMAINS, names=_RESERVED_LABELS):
    def check(key, where):
        if not isinstance(key, str) or not _K8S_KEY_RE.fullmatch(key):
            raise CourseError(
                f"{where}: {show(key)} is not a valid Kubernetes key"
                " (name or prefix/name, e.g. example.org/team)"
            )
        if _reserved(key, domains, names):
            raise CourseError(
                f"{where}: '{key}' is reserved for the hub and Kubernetes;"
                " use a key of your own, e.g. example.org/team"
            )

    return check


def _env_name(key, where):
    if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
        raise CourseError(
            f"{where}: {show(key)} is not a valid variable name"
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
            f" quay.io/jupyter/scipy-notebook:2025-01-06, not {show(value)}"
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
            f" /lab/tree/notebooks, not {show(value)}"
        )
    return _template(value, f"{_OV}: '{name}'", URL_TEMPLATE_FIELDS)


def _ov_resources(value, name):
    where = f"key 'kubespawner_override.{name}'"
    if not isinstance(value, dict):
        raise CourseError(f"{where} must map resource names to quantities")
    for key, amount in value.items():
        _kube_key(domains=(), names=())(key, where)
        if not (
            (isinstance(amount, str) and _QUANTITY_RE.fullmatch(amount))
            or (
                isinstance(amount, int | float)
                and not isinstance(amount, bool)
                and 0 <= amount < float("inf")
            )
        ):
            raise CourseError(
                f"{where}: '{key}' must be a quantity such as 1, 500m or 2Gi,"
                f" not {show(amount)}"
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
        reject_unknown(item, _TOLERATION_KEYS, path)
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
                    f" not {show(item[field_name])}"
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
    return number(value, _OV, name)


def _ov_memory(value, name):
    return memory(value, _OV, name)


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


#: KubeSpawner's deprecated aliases (``singleuser_privileged``,
#: ``singleuser_extra_pod_config``, ``user_storage_class`` ...) set the
#: refused traits through a property, so their prefixes are refused too.
REFUSED_OVERRIDE_PREFIXES = ("_", "singleuser_", "user_storage_")


def override_key_refused(key: str) -> bool:
    """True for keys no course file may set, whatever the deployer allows."""
    return key in REFUSED_OVERRIDE_KEYS or key.startswith(REFUSED_OVERRIDE_PREFIXES)


def split_aalto_keys(value) -> tuple[object, dict]:
    """(the KubeSpawner part, Aalto's course settings) of an override.

    Aalto wrote per-course cull limits and the JupyterLab switch inside
    ``kubespawner_override``; they are course settings, not KubeSpawner
    options (see :data:`AALTO_OVERRIDE_KEYS`).
    """
    if not isinstance(value, dict):
        return value, {}
    kube = {k: v for k, v in value.items() if k not in AALTO_OVERRIDE_KEYS}
    aalto = {k: v for k, v in value.items() if k in AALTO_OVERRIDE_KEYS}
    return kube, aalto


def _one_override(name, item, extra_keys, key):
    check = OVERRIDE_VALIDATORS.get(name)
    if check is not None:
        return check(item, name)
    if override_key_refused(name):
        why = _REFUSED_WHY
    elif name in extra_keys:
        return item  # the deployer's decision; plain YAML data
    else:
        why = _OVERRIDE_HINTS.get(name) or (
            f"a course file may set {', '.join(sorted(OVERRIDE_VALIDATORS))};"
            " the deployer can allow a key with c.CourseCatalog.extra_override_keys"
        )
    raise CourseError(f"{key} key {show(name)} is not allowed: {why}")


def validate_override(value, key, extra_keys: Collection[str] = ()):
    """A course's kubespawner_override, checked against the allow-list.

    Every key is checked; the CourseError lists each problem found.
    """
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CourseError(f"key '{key}' must be a mapping of KubeSpawner options")
    out, problems = {}, []
    for name, item in value.items():
        try:
            out[name] = _one_override(name, item, extra_keys, key)
        except CourseError as e:
            problems.extend(e.problems)
    if problems:
        raise CourseError("; ".join(problems), problems)
    return out
