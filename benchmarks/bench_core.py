"""Benchmarks of the core (issue 2). Run: ``python benchmarks/bench_core.py``.

Measures, on a generated catalog of 1,000 courses and 50,000 roster entries:
1. the profile list for one user (target: median <= 2 ms);
2. pre-spawn work + get_pod_manifest, against plain KubeSpawner with an
   equivalent static config measured in the same run (target: <= 1.5x);
3. a catalog reload after one of the 1,000 files changed (target: <= 20 ms);
4. the spawn page's form for one user, against KubeSpawner's own rendering
   of the same list (issue 14: the form was the largest per-spawn cost).

Each timing is the median of many runs; baselines run interleaved with the
measured code so machine noise hits both alike.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from kube_helpers import MockUser, base_config, make_spawner  # noqa: E402

N_COURSES = 1000
N_ROSTER = 50_000
N_USERS = 20_000


def make_catalog(root: Path) -> Path:
    rng = random.Random(42)
    root.mkdir(parents=True)
    (root / "IMAGES.yaml").write_text("aliases: {DEFAULT: example/notebook:5.0}\n")
    per_course = N_ROSTER // N_COURSES
    for i in range(N_COURSES):
        students = sorted(rng.sample(range(N_USERS), per_course))
        private = i % 10 < 3  # 30 % private
        lines = [
            f"name: Course {i:04d}",
            f"gid: {80000 + i}",
            f"private: {'true' if private else 'false'}",
            f"instructors: [teacher{i % 50}]",
            "datadir: true",
            "image: DEFAULT",
            "students: [" + ", ".join(f"user{s}" for s in students) + "]",
        ]
        (root / f"course{i:04d}.yaml").write_text("\n".join(lines) + "\n")
    users = ["users:"] + [
        f"  user{u}: {{uid: {100000 + u}, gid: 70000, name: User {u}}}"
        for u in range(N_USERS)
    ]
    (root.parent / "users.yaml").write_text("\n".join(users) + "\n")
    return root


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def bench_profile_list(config) -> tuple[float, float]:
    spawner = make_spawner(config, "user123")
    await spawner.course_profiles()  # warm: catalog loaded, identity cached
    ours, base = [], []
    for _ in range(300):
        t = time.perf_counter()
        profiles = await spawner.course_profiles()
        ours.append(time.perf_counter() - t)
        # baseline: copying a static list of the same length, the least any
        # callable profile list must do
        static = profiles
        t = time.perf_counter()
        [dict(p) for p in static]
        base.append(time.perf_counter() - t)
    print(f"  profiles offered to user123: {len(profiles)}")
    return median_ms(ours), median_ms(base)


def static_equivalent(config, manifest_pod):
    """A plain KubeSpawner configured with what CourseSpawner decided."""
    from types import SimpleNamespace

    from jupyterhub.objects import Hub
    from kubespawner import KubeSpawner

    c = manifest_pod
    spawner = KubeSpawner(
        config=config,
        user=MockUser("user123"),
        hub=Hub(),
        orm_spawner=SimpleNamespace(name="", server=None, user_options=None),
        _mock=True,
    )
    spawner.uid, spawner.gid = c.uid, c.gid
    spawner.supplemental_gids = list(c.supplemental_gids)
    spawner.volumes = list(c.volumes)
    spawner.volume_mounts = list(c.volume_mounts)
    spawner.environment = dict(c._plan.env)
    spawner.extra_labels = dict(c.extra_labels)
    spawner.extra_annotations = dict(c.extra_annotations)
    spawner.image = c.image
    spawner.cpu_limit, spawner.mem_limit = c.cpu_limit, c.mem_limit
    return spawner


async def bench_spawn(config) -> tuple[float, float]:
    ours_spawner = make_spawner(config, "user123")
    ours_spawner.user_options = {"profile": "course0005"}
    ours_spawner.clear_state()
    await ours_spawner.run_pre_spawn_hook()
    await ours_spawner.load_user_options()
    plain = static_equivalent(config, ours_spawner)
    ours, base = [], []
    for _ in range(200):
        t = time.perf_counter()
        ours_spawner.user_options = {"profile": "course0005"}
        ours_spawner.clear_state()
        await ours_spawner.run_pre_spawn_hook()
        await ours_spawner.load_user_options()
        await ours_spawner.get_pod_manifest()
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain.clear_state()
        await plain.load_user_options()
        await plain.get_pod_manifest()
        base.append(time.perf_counter() - t)
    return median_ms(ours), median_ms(base)


async def bench_form(config) -> tuple[float, float]:
    """The spawn page's form for one user: CourseSpawner's whole path (the
    profile list, then KubeSpawner's template) against KubeSpawner's own
    ``_render_options_form`` on the same, already built list."""
    spawner = make_spawner(config, "user123")
    await spawner.get_options_form()  # warm: catalog, identity, template
    profiles = await spawner.course_profiles()
    ours, base = [], []
    for _ in range(60):
        t = time.perf_counter()
        await spawner._render_course_options_form()
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        spawner._render_options_form(profiles)
        base.append(time.perf_counter() - t)
    return median_ms(ours), median_ms(base)


def bench_reload(catalog_path: Path) -> tuple[float, float]:
    from aaltohub.catalog import CourseCatalog

    catalog = CourseCatalog(path=str(catalog_path)).load()
    target = catalog_path / "course0500.yaml"
    original = target.read_text()
    changed, unchanged = [], []
    for i in range(50):
        target.write_text(original.replace("Course 0500", f"Course 0500 v{i}"))
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + i + 1))
        t = time.perf_counter()
        slugs = catalog.apply(catalog.scan())
        changed.append(time.perf_counter() - t)
        assert slugs == {"course0500"}, slugs
        t = time.perf_counter()
        catalog.apply(catalog.scan())
        unchanged.append(time.perf_counter() - t)
    return median_ms(changed), median_ms(unchanged)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = make_catalog(Path(tmp) / "courses")
        print(
            f"generated {N_COURSES} courses / {N_ROSTER} roster entries"
            f" in {time.perf_counter() - t:.1f} s"
        )
        config = base_config(path, path.parent / "users.yaml")
        # The audit record of each spawn is part of the measured work; to a
        # file, so the output stays readable.
        config.AuditLog.destination = "file"
        config.AuditLog.path = str(Path(tmp) / "audit.log")
        config.CourseCatalog.reload_interval = 10.0
        from aaltohub.catalog import CourseCatalog

        t = time.perf_counter()
        CourseCatalog(path=str(path)).load()
        print(f"full catalog load: {time.perf_counter() - t:.2f} s (startup only)")

        ours, base = await bench_profile_list(config)
        print(
            f"1. profile list, one user: median {ours:.3f} ms (target <= 2 ms);"
            f" baseline copy of the same list {base:.3f} ms"
        )
        ours, base = await bench_spawn(config)
        print(
            f"2. pre-spawn + manifest: median {ours:.3f} ms; plain KubeSpawner"
            f" {base:.3f} ms; ratio {ours / base:.2f}x (target <= 1.5x)"
        )
        ours, base = await bench_form(config)
        print(
            f"4. spawn form, one user ({N_COURSES} courses): median {ours:.2f} ms;"
            f" KubeSpawner's own rendering of the same list {base:.2f} ms;"
            f" ratio {ours / base:.2f}x"
        )
        changed, unchanged = bench_reload(path)
        print(
            f"3. reload after 1 of {N_COURSES} files changed: median"
            f" {changed:.2f} ms (target <= 20 ms); no-change rescan"
            f" {unchanged:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
