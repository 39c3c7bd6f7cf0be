"""Image references in course files: plain names, aliases, dated series.

The reference deployment exec'd an ``IMAGES.py``; here the same information
is declared data in ``IMAGES.yaml`` next to the course files::

    aliases:
      DEFAULT: aaltoscienceit/notebook-server:5.0.4
      R: aaltoscienceit/notebook-server-r-ubuntu:5.0.4
    series:
      standard:
        - [2023-01-09, aaltoscienceit/notebook-server:6.0.0]
        - [2024-01-08, aaltoscienceit/notebook-server:7.1.2]
"""

from __future__ import annotations

import bisect
import datetime
from dataclasses import dataclass, field

from ..course import CourseError


@dataclass(frozen=True)
class ImageTable:
    aliases: dict[str, str] = field(default_factory=dict)
    # series name -> (sorted dates, images in the same order)
    series: dict[str, tuple[list[datetime.date], list[str]]] = field(
        default_factory=dict
    )

    def resolve(self, ref) -> str:
        """Turn a validated image reference into an image name."""
        if isinstance(ref, tuple):
            name, when = ref
            dates, images = self.series[name]
            i = bisect.bisect_right(dates, when)
            # Nothing old enough: the oldest image is closer to what the
            # course was written for than the newest.
            return images[i - 1] if i else images[0]
        if ref.isupper() and ref in self.aliases:
            return self.aliases[ref]
        return ref

    def check(self, ref, key: str) -> None:
        """Raise CourseError if ``ref`` cannot be resolved."""
        if ref is None:
            return
        if isinstance(ref, tuple):
            if ref[0] not in self.series or not self.series[ref[0]][0]:
                known = ", ".join(sorted(self.series)) or "none defined"
                raise CourseError(
                    f"key '{key}': image series '{ref[0]}' is not defined in the"
                    f" images file (known series: {known})"
                )
        elif ref.isupper() and ref not in self.aliases:
            known = ", ".join(sorted(self.aliases)) or "none defined"
            raise CourseError(
                f"key '{key}': image alias '{ref}' is not defined in the images"
                f" file (known aliases: {known})"
            )


def parse_images(data, source: str) -> ImageTable:
    """Validate an images file; raises CourseError naming the problem."""
    if data is None:
        return ImageTable()
    if not isinstance(data, dict):
        raise CourseError(f"images file {source}: expected aliases: and series:")
    unknown = set(data) - {"aliases", "series"}
    if unknown:
        raise CourseError(
            # str(): YAML keys may be numbers or null, which do not sort
            f"images file {source}: unknown key(s) {sorted(map(str, unknown))};"
            " allowed: aliases, series"
        )
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise CourseError(f"images file {source}: aliases must map NAME: image")
    raw_series = data.get("series") or {}
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
    return ImageTable(aliases=dict(aliases), series=series)
