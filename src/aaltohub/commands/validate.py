"""``aaltohub validate DIR``: check every course file, exit non-zero on errors."""

from __future__ import annotations

import json
import os

from traitlets import TraitError

from ..catalog import CourseCatalog


def register(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="check a course directory; exits 1 if any file is invalid",
        description="Load every course file in DIR the way the hub does and"
        " report each problem with the file, the key and the fix.",
    )
    p.add_argument("path", metavar="DIR", help="course catalog directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--extra-override-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a kubespawner_override key the hub allows beyond the built-in"
        " list (c.CourseCatalog.extra_override_keys); repeat for each key",
    )
    p.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="NAME",
        help="a backend name course files may give (the keys of"
        " c.CourseWrapSpawner.backends); repeat for each name",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    if not os.path.isdir(args.path):
        print(f"error: {args.path} is not a directory")
        return 2
    try:
        catalog = CourseCatalog(
            path=args.path,
            extra_override_keys=set(args.extra_override_key),
            backends=set(args.backend),
        )
    except TraitError as e:
        print(f"error: {e}")
        return 2
    catalog.load()
    problems = catalog.problems()
    warnings = catalog.warnings()
    aalto_images = os.path.join(args.path, "IMAGES.py")
    if os.path.exists(aalto_images) and not os.path.exists(
        os.path.join(args.path, catalog.images_file)
    ):
        warnings.insert(
            0,
            f"{aalto_images} is Aalto's image file, which aaltohub does not run;"
            f" convert it: aaltohub images import {aalto_images} >"
            f" {os.path.join(args.path, catalog.images_file)}",
        )
    if args.json:
        print(
            json.dumps(
                {
                    "courses": sorted(catalog.courses),
                    "problems": problems,
                    "warnings": warnings,
                },
                indent=2,
            )
        )
    else:
        for line in problems:
            print(f"error: {line}")
        for line in warnings:
            print(f"warning: {line}")
        print(
            f"{len(catalog.courses)} course(s) valid, {len(problems)} problem(s),"
            f" {len(warnings)} warning(s) in {args.path}"
        )
    return 1 if problems else 0
