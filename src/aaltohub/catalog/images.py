"""Image references in course files: plain names, aliases, dated series.

The reference (Aalto) deployment exec'd an ``IMAGES.py``; here the same
information is declared data in ``IMAGES.yaml`` next to the course files
(``aaltohub images import IMAGES.py`` writes it from Aalto's file)::

    aliases:
      DEFAULT: aaltoscienceit/notebook-server:5.0.4
      R: aaltoscienceit/notebook-server-r-ubuntu:5.0.4
    series:
      standard:
        - [2023-01-09, aaltoscienceit/notebook-server:6.0.0]
        - [2024-01-08, aaltoscienceit/notebook-server:7.1.2]
    old:
      - {name: null, image: aaltoscienceit/notebook-server:5.0.26}

An all-uppercase reference is an alias. As in Aalto's ``select_image``,
``image: R`` and ``image: IMAGE_R`` both mean the alias ``R`` (the short
name is tried as ``IMAGE_R`` first there; here the table holds short names
and accepts the full one). ``old`` lists Aalto's ``IMAGES_OLD`` "old
version" profiles: a display name (null: "Old version (JupyterLab)") and
an image.
"""

from __future__ import annotations

import bisect
import datetime
from dataclasses import dataclass, field

from ..course import CourseError

#: Prefix of Aalto's alias variables in IMAGES.py (IMAGE_DEFAULT -> DEFAULT).
ALIAS_PREFIX = "IMAGE_"
#: Display name of an old-version profile without its own (Aalto's text).
OLD_DEFAULT_NAME = "Old version (JupyterLab)"


@dataclass(frozen=True)
class OldImage:
    """One of Aalto's IMAGES_OLD profiles."""

    name: str | None
    image: str

    @property
    def display_name(self) -> str:
        return self.name or OLD_DEFAULT_NAME


@dataclass(frozen=True)
class ImageTable:
    aliases: dict[str, str] = field(default_factory=dict)
    # series name -> (sorted dates, images in the same order)
    series: dict[str, tuple[list[datetime.date], list[str]]] = field(
        default_factory=dict
    )
    old: tuple[OldImage, ...] = ()

    def alias(self, ref: str) -> str | None:
        """The image of an uppercase alias by short or full name, or None."""
        if not ref.isupper():
            return None
        if ref in self.aliases:
            return self.aliases[ref]
        if ref.startswith(ALIAS_PREFIX):
            return self.aliases.get(ref[len(ALIAS_PREFIX) :])
        return None

    def before_first(self, ref) -> bool:
        """True for a dated reference older than its series' first image
        (Aalto used the course default image there; aaltohub the oldest)."""
        if not isinstance(ref, tuple) or ref[0] not in self.series:
            return False
        dates = self.series[ref[0]][0]
        return bool(dates) and ref[1] < dates[0]

    def resolve(self, ref) -> str:
        """Turn a validated image reference into an image name."""
        if isinstance(ref, tuple):
            name, when = ref
            dates, images = self.series[name]
            i = bisect.bisect_right(dates, when)
            # Nothing old enough: the oldest image is closer to what the
            # course was written for than the newest.
            return images[i - 1] if i else images[0]
        found = self.alias(ref)
        return ref if found is None else found

    def check(self, ref, key: str) -> None:
        """Raise CourseError if ``ref`` cannot be resolved."""
        if ref is None:
            return
        if isinstance(ref, tuple):
            if ref[0] not in self.series or not self.series[ref[0]][0]:
                known = ", ".join(sorted(self.series)) or "none defined"
                raise CourseError(
                    f"key '{key}': image series '{ref[0]}' is not defined in the"
                    f" images file (known series: {known}); convert Aalto's"
                    " IMAGES.py with 'aaltohub images import'"
                )
        elif ref.isupper() and self.alias(ref) is None:
            known = ", ".join(sorted(self.aliases)) or "none defined"
            raise CourseError(
                f"key '{key}': image alias '{ref}' is not defined in the images"
                f" file (known aliases: {known}); Aalto's hub used an unknown"
                " alias literally as an image name, aaltohub refuses it: define"
                " it in the images file or write the full image name"
            )


def _series(raw_series, source: str) -> dict:
    if not isinstance(raw_series, dict):
        raise CourseError(
            f"images file {source}: series must map NAME: [[YYYY-MM-DD, image], ...]"
        )
    series = {}
    for name, entries in raw_series.items():
        pairs = []
        for entry in entries if isinstance(entries, list) else [None]:
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                # a date, not a datetime: the two cannot be sorted together
                or type(entry[0]) is not datetime.date
                or not isinstance(entry[1], str)
            ):
                raise CourseError(
                    f"images file {source}: series '{name}' must be a list of"
                    " [YYYY-MM-DD, image] pairs"
                )
            pairs.append((entry[0], entry[1]))
        pairs.sort()
        series[str(name)] = ([d for d, _ in pairs], [i for _, i in pairs])
    return series


def _old(raw_old, source: str) -> tuple[OldImage, ...]:
    out = []
    for item in raw_old if isinstance(raw_old, list) else [None]:
        if (
            not isinstance(item, dict)
            or set(item) - {"name", "image"}
            or not isinstance(item.get("image"), str)
            or not item["image"]
            or not isinstance(item.get("name"), str | None)
        ):
            raise CourseError(
                f"images file {source}: old must be a list of {{name: TEXT or"
                " null, image: IMAGE}}"
            )
        out.append(OldImage(item.get("name"), item["image"]))
    return tuple(out)


def parse_images(data, source: str) -> ImageTable:
    """Validate an images file; raises CourseError naming the problem."""
    if data is None:
        return ImageTable()
    if not isinstance(data, dict):
        raise CourseError(f"images file {source}: expected aliases: and series:")
    unknown = set(data) - {"aliases", "series", "old"}
    if unknown:
        raise CourseError(
            # str(): YAML keys may be numbers or null, which do not sort
            f"images file {source}: unknown key(s) {sorted(map(str, unknown))};"
            " allowed: aliases, series, old"
        )
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise CourseError(f"images file {source}: aliases must map NAME: image")
    return ImageTable(
        aliases=dict(aliases),
        series=_series(data.get("series") or {}, source),
        old=_old(data.get("old") or [], source),
    )
