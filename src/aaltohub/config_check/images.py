"""Course catalog and image checks: what pods would be started from.

An unreadable course directory leaves the hub with no courses, and a
default image that is no image reference, or an alias (``DEFAULT``) that
the catalog's images file does not define, reaches pods as the literal
string, so every spawn fails to pull. These checks read the catalog
directory and its images file, and the spawner's own image settings.
:func:`unreadable` says why a file or directory cannot be used (the
identity checks use it for a users file).
"""

from __future__ import annotations

import os
import re

import yaml
from traitlets import TraitError
from traitlets.config import Config

from .classes import configured
from .problems import TRAIT_FIX, Problem

# The grammar of an image reference (distribution/reference): an optional
# registry host[:port], slash-separated lowercase path components, an
# optional tag and an optional digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_DOMAIN = rf"(?:{_HOST}(?:\.{_HOST})*(?::[0-9]+)?/)"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)


def image_reference_ok(ref: str) -> bool:
    """True if ``ref`` is a well-formed image reference (``repo/name:tag``)."""
    return len(ref) <= 255 and IMAGE_REFERENCE.fullmatch(ref) is not None


def unreadable(path: str, *, file: bool) -> str:
    """Why ``path`` cannot be used, or '' if it can."""
    kind = "file" if file else "directory"
    if not path:
        return f"is empty: no {kind} is given"
    if not os.path.exists(path):
        return f"is {path!r}, which does not exist (uid {os.getuid()})"
    if file and not os.path.isfile(path):
        return f"is {path!r}, which is not a regular file"
    if not file and not os.path.isdir(path):
        return f"is {path!r}, which is not a directory"
    mode = os.R_OK if file else os.R_OK | os.X_OK
    if not os.access(path, mode):
        return f"is {path!r}, which uid {os.getuid()} cannot read"
    return ""


def catalog_problems(config: Config, spawner_cls) -> list[Problem]:
    """The course directory is readable; default images are real references."""
    from ..catalog import CourseCatalog

    if "CourseCatalog" not in config and spawner_cls is None:
        return []
    try:
        catalog = CourseCatalog(config=config)
    except TraitError as e:
        return [Problem("c.CourseCatalog", f"has an invalid setting: {e}", TRAIT_FIX)]
    problems, table = [], None
    if catalog.path:
        why = unreadable(catalog.path, file=False)
        if why:
            problems.append(
                Problem(
                    "c.CourseCatalog.path",
                    why,
                    "mount the course directory into the hub at this path"
                    " (z2jh: hub.extraVolumes and hub.extraVolumeMounts) or"
                    " correct the path",
                )
            )
        else:
            table, problem = _images_table(catalog)
            problems += [problem] if problem else []
    problems += _default_image_problems(catalog, table)
    problems += spawner_image_problems(config, spawner_cls)
    return problems


def _images_table(catalog):
    """The catalog's image table (None: no usable file) and its problem."""
    from ..catalog.images import ImageTable, parse_images
    from ..catalog.safe_files import Refused, read_bytes
    from ..catalog.safe_yaml import load_yaml
    from ..course import CourseError

    where = os.path.join(catalog.path, catalog.images_file)
    if not os.path.lexists(where):
        return ImageTable(), None
    root = os.open(catalog.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        data = read_bytes(root, catalog.images_file, catalog.max_file_size)
        return parse_images(load_yaml(data.decode()), catalog.images_file), None
    except (OSError, Refused, CourseError, ValueError, yaml.YAMLError) as e:
        fix = "correct the images file (`aaltohub validate DIR` checks it too)"
        return None, Problem("c.CourseCatalog.images_file", f"{where}: {e}", fix)
    finally:
        os.close(root)


def _default_image_problems(catalog, table) -> list[Problem]:
    ref, key = catalog.default_image, "c.CourseCatalog.default_image"
    if not ref:
        return []
    full = "or set a full reference such as quay.io/jupyter/scipy-notebook:2025-01-06"
    if ref.isupper():  # an alias, as ImageTable.resolve reads it
        where = os.path.join(
            catalog.path or "(no c.CourseCatalog.path)", catalog.images_file
        )
        if table is None or ref not in table.aliases:
            known = ", ".join(sorted(table.aliases)) if table else "file unreadable"
            return [
                Problem(
                    key,
                    f"is the alias {ref!r}, which {where} does not define (known"
                    f" aliases: {known or 'none'}): pods would get the literal"
                    f" image name {ref!r}",
                    f"add `aliases: {{{ref}: REGISTRY/IMAGE:TAG}}` to the images"
                    f" file, {full}",
                )
            ]
        ref = table.aliases[ref]
    if not image_reference_ok(ref):
        return [Problem(key, f"gives {ref!r}, which is no image reference", full)]
    return []


def spawner_image_problems(config: Config, spawner_cls) -> list[Problem]:
    """The spawner's image and its general profiles' images are references."""
    if spawner_cls is None:
        return []
    name, found = spawner_cls.__name__, []
    image = configured(config, spawner_cls, "image")
    if isinstance(image, str):
        found.append((f"c.{name}.image", image))
    profiles = configured(config, spawner_cls, "general_profiles") or []
    for i, profile in enumerate(profiles if isinstance(profiles, list) else []):
        override = (
            profile.get("kubespawner_override") if isinstance(profile, dict) else None
        )
        if isinstance(override, dict) and isinstance(override.get("image"), str):
            key = f"c.{name}.general_profiles[{i}].kubespawner_override.image"
            found.append((key, override["image"]))
    return [
        Problem(
            key, f"is {ref!r}, which is no image reference", "give REGISTRY/IMAGE:TAG"
        )
        for key, ref in found
        if not image_reference_ok(ref)
    ]
