"""``aaltohub images import PATH/IMAGES.py``: Aalto's image file as IMAGES.yaml.

The file is parsed, never run (:mod:`aaltohub.catalog.images_import`). The
YAML goes to standard output; what could not be converted, and whether every
course next to it now resolves its images, to standard error. Exits 1 if a
course's image reference does not resolve.
"""

from __future__ import annotations

import os
import sys

from ..catalog import CourseCatalog
from ..catalog.images_import import import_images

MAX_SIZE = 1024 * 1024


def register(sub) -> None:
    p = sub.add_parser(
        "images",
        help="image definitions: convert Aalto's IMAGES.py",
        description="Image definitions of the course catalog.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="convert Aalto's IMAGES.py to IMAGES.yaml (printed), without running it",
        description="Parse Aalto's IMAGES.py (never executed) and print the"
        " equivalent IMAGES.yaml. Names anything not converted, and checks"
        " that every course file next to it resolves its image.",
    )
    imp.add_argument("path", metavar="PATH/IMAGES.py")
    imp.add_argument(
        "--courses",
        metavar="DIR",
        help="course directory to check (default: the directory of IMAGES.py)",
    )
    imp.set_defaults(func=run_import)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise ValueError(f"{path} is larger than {MAX_SIZE} bytes")
    return data.decode("utf-8")


def _check_courses(directory: str, result) -> int:
    """Report every course's image under the converted table; 1 if any fails."""
    catalog = CourseCatalog(path=directory, images_file=".aaltohub-no-images")
    catalog.use_images(result.table())  # before loading: checked once, with it
    catalog.load()
    problems = catalog.problems()
    refs = 0
    for course in catalog.courses.values():
        for ref in (course.image, course.image_instructor):
            if ref is not None:
                refs += 1
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    for line in catalog.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"{refs} image reference(s) in {len(catalog.courses)} course(s) resolve;"
        f" {len(problems)} course(s) with problems in {directory}",
        file=sys.stderr,
    )
    return 1 if problems else 0


def run_import(args) -> int:
    try:
        text = _read(args.path)
    except (OSError, ValueError) as e:
        print(f"error: cannot read {args.path}: {e}", file=sys.stderr)
        return 2
    result = import_images(text, os.path.basename(args.path))
    print(result.to_yaml(), end="")
    for line in result.skipped:
        print(f"not converted: {line}", file=sys.stderr)
    if "COURSE_DEFAULT" in result.aliases:
        print(
            "note: Aalto gave courses without 'image' IMAGE_COURSE_DEFAULT; set"
            ' c.CourseCatalog.default_image = "COURSE_DEFAULT"',
            file=sys.stderr,
        )
    if result.old:
        print(
            f"note: {len(result.old)} old-version profile(s) (IMAGES_OLD) are"
            " under 'old:'; see docs/migrating-from-aalto.md",
            file=sys.stderr,
        )
    directory = args.courses or os.path.dirname(os.path.abspath(args.path))
    if not os.path.isdir(directory):
        print(f"error: {directory} is not a directory", file=sys.stderr)
        return 2
    return _check_courses(directory, result)
