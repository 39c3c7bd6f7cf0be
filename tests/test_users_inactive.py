"""Leavers: the rule, then ``aaltohub users inactive|archive|restore`` on a
real storage tree against a real JupyterHub (its REST API's last_activity).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
import yaml

from aaltohub.audit import rotated_files
from aaltohub.cli import main
from aaltohub.leavers import GONE, NEVER, leavers
from aaltohub.storage.homes_archive import find_homes, home_pattern
from aaltohub.storage.paths import UnsafePath
from hub_process import hub  # noqa: F401 (fixture)

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_rule():
    homes = [("a", "u/01/a"), ("b", "u/02/b"), ("c", "u/03/c"), ("d", "u/04/d")]
    seen = {
        "a": datetime(2026, 6, 1, tzinfo=UTC),
        "b": datetime(2025, 1, 1, tzinfo=UTC),
    }
    seen["c"] = None
    found = leavers(homes, seen, T, in_directory=lambda name: name != "a")
    assert [(x.username, x.reasons) for x in found] == [
        ("a", (GONE,)),  # active, but gone from the directory
        ("b", ("no activity since 2025-01-01",)),
        ("c", (NEVER,)),
        ("d", (NEVER,)),  # has a home, the hub never saw them
    ]
    assert leavers(homes[:1], seen, T) == []  # without a directory check


def test_homes_are_found_from_the_path_template(tmp_path):
    for rel in ("u/01/alice", "u/02/bob", "u/xx/nope", "other/carol"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "u/03").mkdir()
    os.symlink("/etc", tmp_path / "u/03/mallory")
    assert find_homes(str(tmp_path), "u/{uid_last2digits}/{username}") == [
        ("alice", "u/01/alice"),
        ("bob", "u/02/bob"),
    ]
    assert find_homes(str(tmp_path), "other/{username}/") == [("carol", "other/carol")]
    with pytest.raises(UnsafePath, match=r"no \{username\}"):
        home_pattern("homes/{uid}")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inactive_archive_restore(hub, tmp_path, capsys):  # noqa: F811
    store = tmp_path / "store"
    for rel, size in (
        ("u/01/s1", 10),
        ("u/02/old1", 5000),
        ("u/03/gone1", 1),
        ("u/04/never", 1),
    ):
        (store / rel).mkdir(parents=True)
        (store / rel / "work.ipynb").write_bytes(b"x" * size)
    hub.user("s1", datetime.now(UTC).isoformat())
    hub.user("old1", "2024-01-01T00:00:00Z")
    hub.user("gone1")
    directory = tmp_path / "directory.yaml"
    directory.write_text(yaml.safe_dump({"s1": 1001, "old1": 1002, "never": 1004}))
    common = [
        "--storage-root",
        store,
        "--hub-url",
        hub.url,
        "--hub-token-file",
        hub.token_file,
        "--since",
        "2025-06-01",
        "--directory",
        directory,
    ]
    _lists_inactive_homes(capsys, common)
    _bad_token_is_a_clear_error(capsys, tmp_path, common)
    _archive_and_restore(capsys, store, tmp_path / "audit.log", common)


def _lists_inactive_homes(capsys, common):
    code, out, err = run(capsys, "users", "inactive", "--json", *common)
    assert code == 0, err
    rows = {r["username"]: r for r in json.loads(out)}
    assert set(rows) == {"old1", "gone1", "never"}
    assert rows["old1"]["reasons"] == ["no activity since 2024-01-01"]
    assert rows["old1"]["last_activity"].startswith("2024-01-01")
    assert rows["old1"]["size"] >= 4096
    assert rows["gone1"]["reasons"] == [NEVER, GONE]
    assert "3 inactive home(s)" in err


def _bad_token_is_a_clear_error(capsys, tmp_path, common):
    # A token without the scopes gets a clear error, not a traceback.
    bad = tmp_path / "bad"
    bad.write_text("not-a-token")
    code, _, err = run(
        capsys,
        "users",
        "inactive",
        *common[:4],
        "--hub-token-file",
        bad,
        "--since",
        "2025-06-01",
    )
    assert code == 2 and "HTTP 403" in err and "scopes" in err


def _archive_and_restore(capsys, store, log, common):
    code, out, _ = run(capsys, "users", "archive", "--dry-run", *common, "old1")
    assert (
        code == 0
        and out == "would archive u/02/old1 (old1: no activity since 2024-01-01)\n"
    )
    assert (store / "u/02/old1").is_dir()
    code, out, _ = run(capsys, "users", "archive", "--audit-log", log, *common, "old1")
    assert code == 0 and "archived u/02/old1 -> archive/homes/old1" in out
    assert not (store / "u/02/old1").exists()
    assert (store / "archive/homes/old1/work.ipynb").exists()
    record = json.loads((store / "archive/homes/old1.archived.json").read_text())
    assert record["home"] == "u/02/old1" and record["reason"].startswith("no activity")
    # Idempotent: archived homes are no longer listed, and not archived twice.
    code, out, _ = run(capsys, "users", "archive", "--audit-log", log, *common, "old1")
    assert code == 0 and out == ""

    code, out, _ = run(
        capsys, "users", "restore", "--audit-log", log, "--storage-root", store, "old1"
    )
    assert code == 0 and (store / "u/02/old1/work.ipynb").exists()
    actions = [
        json.loads(line)["action"]
        for p in rotated_files(log)
        for line in p.read_text().splitlines()
    ]
    assert actions == ["users.archive", "users.restore"]
