"""Benchmark: ``course check`` and a no-op ``course fix`` over 100,000 files.

Builds a course with the real layout in a temporary directory, fills its
files, data and exchange with 100,000 correct entries, and times:

* a baseline: ``os.walk`` plus ``os.lstat`` of every entry (the least any
  checker must do), measured in the same run on the same tree;
* ``run(check)``: every problem check, nothing to report;
* ``run(fix)`` when nothing needs fixing (must change no ctime).

Run:  .venv/bin/python benchmarks/bench_storage.py [--files 100000] [--repeat 3]
The issue's target is 5 s or less for check and for the no-op fix.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from aaltohub.course import build_course
from aaltohub.storage import course_dirs
from aaltohub.storage.layout import StorageLayout

TARGET_SECONDS = 5.0


def build_tree(root: str, files: int, per_dir: int) -> tuple[list, int]:
    """A correct course tree with ``files`` files; returns (entries, count)."""
    gid = os.getegid()
    course = build_course(
        "bench",
        {"gid": gid if gid > 0 else 70001, "instructors": ["t"], "datadir": True},
    )
    layout = StorageLayout(course_uid=os.geteuid())
    entries = layout.entries(course)
    result = course_dirs.run(root, entries, fix=True)
    assert not result.unfixed, result.unfixed
    # Spread files over the three walked trees the way courses fill up:
    # mostly instructor files, then data, then released assignments.
    shares = [
        ("course/bench/files", 0.6, 0o660, 0o2770),
        ("course/bench/data", 0.3, 0o664, 0o2775),
        ("exchange/bench/bench/outbound", 0.1, 0o664, 0o2775),
    ]
    made = 0
    for rel, share, fmode, dmode in shares:
        want = int(files * share)
        base = os.path.join(root, rel)
        d = 0
        while want > 0:
            sub = os.path.join(base, f"d{d // 50:03d}", f"sub{d:05d}")
            os.makedirs(sub, exist_ok=True)
            for path in (os.path.dirname(sub), sub):
                os.chmod(path, dmode)
                os.chown(path, -1, course.gid)
            for i in range(min(per_dir, want)):
                p = os.path.join(sub, f"f{i:04d}.ipynb")
                with open(p, "w") as f:
                    f.write("{}")
                os.chmod(p, fmode)
                os.chown(p, -1, course.gid)
                want -= 1
                made += 1
            d += 1
    return entries, made


def baseline(root: str) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lstat(os.path.join(dirpath, name))
            n += 1
    return n


def ctimes(root: str) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[p] = os.lstat(p).st_ctime_ns
    return out


def timed(func, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-dir", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the tree")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="aaltohub-bench-")
    try:
        t0 = time.perf_counter()
        entries, made = build_tree(root, args.files, args.per_dir)
        build = time.perf_counter() - t0
        # Warm the dentry/inode cache once, so every timing below is equal.
        baseline(root)

        t_base, n_base = timed(lambda: baseline(root), args.repeat)
        t_check, check = timed(lambda: course_dirs.run(root, entries), args.repeat)
        before = ctimes(root)
        t_fix, fix = timed(
            lambda: course_dirs.run(root, entries, fix=True), args.repeat
        )
        after = ctimes(root)

        assert not check.problems, check.problems[:5]
        assert not fix.actions, fix.actions[:5]
        changed = sum(1 for p in before if before[p] != after.get(p))

        print(
            f"tree: {made:,} files, {n_base:,} entries in all, built in {build:.1f} s"
        )
        print(f"median of {args.repeat} runs, warm cache, {os.cpu_count()} CPUs\n")
        print(f"{'operation':<32}{'seconds':>9}{'entries/s':>12}{'vs baseline':>13}")
        rows = [
            ("os.walk + lstat (baseline)", t_base, n_base),
            ("course check", t_check, check.scanned),
            ("course fix (nothing to fix)", t_fix, fix.scanned),
        ]
        for name, t, n in rows:
            print(f"{name:<32}{t:>9.3f}{n / t:>12,.0f}{t / t_base:>12.2f}x")
        print(f"\nctimes changed by the no-op fix: {changed}")
        ok = t_check <= TARGET_SECONDS and t_fix <= TARGET_SECONDS and not changed
        print(f"target <= {TARGET_SECONDS:g} s each: {'met' if ok else 'NOT MET'}")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"tree kept at {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
