"""The course catalog: a directory of course YAML files and its image
table (``directory``, ``images``), and in-place edits of a course file
(``edit``)."""

from .directory import ROSTER_SUFFIX, CourseCatalog, ScanResult

__all__ = ["ROSTER_SUFFIX", "CourseCatalog", "ScanResult"]
