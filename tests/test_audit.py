"""The audit log: records, rotation and retention, reading it back
(``aaltohub audit``), and the login records of the real authenticators.

The hub's own records (spawns, starts, stops, culls, admin API actions,
request ids) are tested through a real hub in test_spawn_events.py.
"""

from __future__ import annotations

import ast
import contextvars
import functools
import json
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from traitlets.config import Config

from aaltohub import cli, commands, metrics
from aaltohub.audit import (
    ACTIONS,
    CLI_ACTIONS,
    FIELDS,
    AuditLog,
    audit_log,
    begin_request,
    current_request,
    rotated_files,
)
from aaltohub.audit_query import Query, Reader, format_table, parse_time
from aaltohub.auth import LDAPIdentityAuthenticator
from aaltohub.demo.auth import DemoAuthenticator, write_password_hash

PASSWORD = "correct-horse-battery"
WRONG = "Tr0ub4dor&3-not-this-one"
USERS = "users:\n  alice: {uid: 1001, gid: 1001, name: Alice}\n"


def lines(path) -> list[dict]:
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


# --- records -----------------------------------------------------------------------
def in_own_context(test):
    """Run ``test`` in a copy of the context: the request it begins is not
    left behind (a later test's server stop would wait for it to finish)."""
    return functools.wraps(test)(
        lambda *args, **kwargs: contextvars.copy_context().run(test, *args, **kwargs)
    )


@in_own_context
def test_a_record_has_every_field_and_the_requests_id(tmp_path):
    log = AuditLog(destination="file", path=str(tmp_path / "audit.log"))
    context = begin_request("proxy-id-1234")
    log.record("login", actor="alice", target="alice", reason="x\ny")
    log.record("logout", actor="alice", request_id="given")
    log.flush()
    first, second = lines(tmp_path / "audit.log")
    assert list(first) == list(FIELDS)
    assert first["request_id"] == context.request_id == "proxy-id-1234"
    assert first["reason"] == "x\ny"  # one line in the file (JSON escapes it)
    assert second["request_id"] == "given"
    log.close()


def test_the_file_is_ascii_whatever_a_username_holds(tmp_path):
    # a failed login records the typed name: terminal control characters
    # (ESC, and C1's CSI, which JSON alone leaves raw) must not reach an
    # operator's `cat audit.log`; the text reads back unchanged
    log = AuditLog(destination="file", path=str(tmp_path / "audit.log"))
    typed = "mall\x1b[2Jory\x9b31mä"
    log.record("login", actor=typed, outcome="failed")
    assert log.flush()
    raw = (tmp_path / "audit.log").read_bytes()
    assert raw.isascii() and b"\x1b" not in raw
    (record,) = lines(tmp_path / "audit.log")
    assert record["actor"] == typed
    log.close()


def test_the_first_record_touches_no_disk_on_the_callers_thread(tmp_path):
    path = tmp_path / "new-dir" / "audit.log"
    log = AuditLog(destination="file", path=str(path))
    built_in = []
    make = log._make_handler

    def spy():
        built_in.append(threading.current_thread())
        return make()  # mkdir, open, expiry of rotated files

    log._make_handler = spy
    log.record("login", actor="alice")
    log.flush()
    assert built_in and threading.current_thread() not in built_in
    assert lines(path)[0]["actor"] == "alice"
    log.close()


@in_own_context
def test_a_request_context_runs_waiting_work_once_the_requester_is_known():
    context = begin_request("")
    seen = []
    context.when_finished(lambda c: seen.append(("early", c.actor)))
    assert seen == [] and current_request() is context
    context.finish("jupyterhub-idle-culler", True)
    context.when_finished(lambda c: seen.append(("late", c.actor_is_service)))
    assert seen == [("early", "jupyterhub-idle-culler"), ("late", True)]
    assert len(context.request_id) == 32


def test_rotation_keeps_backup_count_files_and_retention_deletes_old_ones(tmp_path):
    path = tmp_path / "audit.log"
    old = tmp_path / "audit.log.7"  # a rotated file past retention
    old.write_text('{"action": "login"}\n')
    week_ago = time.time() - 7 * 86400
    os.utime(old, (week_ago, week_ago))
    log = AuditLog(
        destination="file",
        path=str(path),
        max_bytes=2000,
        backup_count=3,
        retention_days=2,
    )
    for i in range(100):
        log.record("spawn", actor=f"user{i:03}", course="intro")
    log.flush()
    log.close()
    files = rotated_files(str(path))
    assert not old.exists()
    assert [f.name for f in files] == [
        "audit.log.3",
        "audit.log.2",
        "audit.log.1",
        "audit.log",
    ]
    assert all(f.stat().st_size <= 2000 for f in files)
    # Oldest first, in order, and the newest record is last.
    actors = [r["actor"] for r in Reader(str(path)).records()]
    assert actors == sorted(actors) and actors[-1] == "user099"
    assert len(actors) < 100  # the oldest were rotated away


def test_the_hub_has_one_audit_log_and_off_keeps_recent_records():
    c = Config()
    c.AuditLog.destination = "off"
    log = audit_log(c)
    assert audit_log(c) is log
    log.record("server-fail", course="intro", outcome="failed", reason="image: x")
    log.record("server-start", course="intro")
    assert [r["action"] for r in log.recent(course="intro", outcome="failed")] == [
        "server-fail"
    ]
    assert set(ACTIONS) >= {"login", "spawn", "server-fail", "cull", "admin-api"}


# --- the CLI's actions --------------------------------------------------------------
# Calls whose action or step is not a string literal, by (file, innermost
# function, call): each passes on a literal its callers give.
PASSED_ON = {
    ("course.py", "_audited", "Audit"),  # Audit(args, command)
    ("course_common.py", "record", "record"),  # Audit.record: command.step
    ("course_end_term.py", "ok", "record"),  # _Steps.ok(step, ...)
    ("course_end_term.py", "skip", "record"),  # _Steps.skip(step, ...)
}


def cli_audit_calls() -> tuple[dict, dict, set]:
    """What the commands' code passes to its audit calls: per file, the
    commands (``Audit(args, "course.fix")``, ``_audited(args, ...)``) and
    the steps (``audit.record("change")``, ``steps.ok("access", ...)``);
    and the whole actions of the commands that use ``cli_audit_log``
    without ``Audit`` (``log.record("grade")``)."""
    commands_of, steps_of, whole, unchecked = {}, {}, set(), []
    for path in sorted(Path(commands.__file__).parent.glob("*.py")):
        calls = []  # (innermost function, call name, the argument)

        def walk(node, function, calls=calls):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    walk(child, child.name)
                    continue
                if isinstance(child, ast.Call):
                    f = child.func
                    name = f.id if isinstance(f, ast.Name) else ""
                    if name in ("Audit", "_audited") and len(child.args) > 1:
                        calls.append((function, name, child.args[1]))
                    elif name == "cli_audit_log":
                        calls.append((function, name, None))
                    elif isinstance(f, ast.Attribute) and child.args:
                        steps = isinstance(f.value, ast.Name) and f.value.id == "steps"
                        if f.attr == "record" or (steps and f.attr in ("ok", "skip")):
                            calls.append((function, "record", child.args[0]))
                walk(child, function)

        walk(ast.parse(path.read_text(encoding="utf-8")), "")
        names = {name for _, name, _ in calls}
        literal = {}
        for function, name, arg in calls:
            if arg is None:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                literal.setdefault(name, set()).add(arg.value)
            elif (path.name, function, name) not in PASSED_ON:
                unchecked.append(f"{path.name}:{arg.lineno} {ast.unparse(arg)}")
        commands_of[path.name] = literal.get("Audit", set()) | literal.get(
            "_audited", set()
        )
        records = literal.get("record", set())
        if "cli_audit_log" in names and not commands_of[path.name]:
            whole |= records
        else:
            steps_of[path.name] = records
    assert not unchecked, f"audit actions that are not literals: {unchecked}"
    return commands_of, steps_of, whole


def test_cli_actions_are_those_the_commands_write():
    commands_of, steps_of, whole = cli_audit_calls()
    every_command = set().union(*commands_of.values())
    # The scan finds them at all:
    assert {"course.end-term", "retention"} <= every_command, every_command
    assert {"grade", "announce"} <= whole, whole
    assert len(set(CLI_ACTIONS)) == len(CLI_ACTIONS)
    assert not set(CLI_ACTIONS) & set(ACTIONS), set(CLI_ACTIONS) & set(ACTIONS)
    possible = set(whole)
    for name, steps in steps_of.items():
        for step in steps:
            # A step may be written under a command of another file
            # (course_term.archive_one is end-term's archive step too).
            written = (
                {f"{c}.{step}" for c in every_command}
                if step
                else set(commands_of[name])
            )
            assert written & set(CLI_ACTIONS), f"{name}: step {step!r}"
            possible |= written
    for command in every_command:
        listed = (a == command or a.startswith(command + ".") for a in CLI_ACTIONS)
        assert any(listed), f"command {command!r}"
    assert whole <= set(CLI_ACTIONS), whole - set(CLI_ACTIONS)
    # Nothing listed that nothing writes.
    assert set(CLI_ACTIONS) <= possible, set(CLI_ACTIONS) - possible


# --- reading it back: aaltohub audit ------------------------------------------------
def write_log(tmp_path) -> str:
    now = datetime.now(UTC)

    def rec(hours_ago, **fields):
        when = (now - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")
        base = {k: "" for k in FIELDS} | {"outcome": "ok"}
        return json.dumps(base | {"time": when} | fields)

    path = tmp_path / "audit.log"
    (tmp_path / "audit.log.1").write_text(
        rec(72, action="login", actor="alice", target="alice")
        + "\n"
        + rec(50, action="spawn", actor="bob", target="bob", course="intro")
        + "\n{not json\n"
    )
    path.write_text(
        "\n".join(
            [
                rec(
                    3,
                    action="login",
                    actor="alice",
                    outcome="failed",
                    reason="bad credentials",
                ),
                rec(
                    1,
                    action="server-fail",
                    actor="bob",
                    target="bob/gpu",
                    course="intro",
                    outcome="failed",
                    reason="image: gone",
                ),
                rec(
                    0.5,
                    action="admin-api",
                    actor="admin1",
                    target="DELETE /hub/api/users/alice/server",
                ),
                "[1, 2]",
                rec(
                    0.1,
                    action="cull",
                    actor="jupyterhub-idle-culler",
                    target="alice",
                    course="ml",
                ),
            ]
        )
        + "\n"
    )
    return str(path)


def audit(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main(["audit", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_filters_and_json(tmp_path, capsys):
    path = write_log(tmp_path)
    status, out, err = audit(capsys, "--file", path, "--json")
    records = [json.loads(x) for x in out.splitlines()]
    assert status == 0 and len(records) == 6
    assert records[0]["time"] < records[-1]["time"]  # rotated file first
    assert "skipped 2 line(s)" in err  # the bad JSON and the list

    def actions(*argv):
        status, out, _ = audit(capsys, "--file", path, "--json", *argv)
        assert status == 0
        return [json.loads(x)["action"] for x in out.splitlines()]

    assert actions("--user", "bob") == ["spawn", "server-fail"]  # target bob/gpu
    assert actions("--user", "alice") == ["login", "login", "cull"]
    assert actions("--course", "intro") == ["spawn", "server-fail"]
    assert actions("--action", "login", "--outcome", "failed") == ["login"]
    assert actions("--since", "2h") == ["server-fail", "admin-api", "cull"]
    assert actions("--since", "4d", "--until", "2d") == ["login", "spawn"]
    until = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    assert actions("--since", "60h", "--until", until) == ["spawn", "login"]


def test_cli_table_and_errors(tmp_path, capsys, monkeypatch):
    path = write_log(tmp_path)
    status, out, _ = audit(capsys, "--file", path, "--action", "server-fail")
    header, row = out.splitlines()
    assert header.split() == ["time", "actor", "action", "target", "course",
                              "outcome", "reason"]  # fmt: skip
    assert "bob/gpu" in row and "image: gone" in row
    status, _, err = audit(capsys, "--file", path, "--since", "yesterday")
    assert status == 2 and "ISO time" in err
    status, _, err = audit(capsys, "--file", str(tmp_path / "nope.log"))
    assert status == 2 and "does not exist" in err
    monkeypatch.setenv("AALTOHUB_AUDIT_LOG", path)
    status, out, _ = cli.main(["audit", "--limit", "1", "--json"]), *capsys.readouterr()
    assert status == 0 and json.loads(out)["action"] == "cull"


def test_the_table_shows_no_terminal_control_from_a_record():
    typed = "eve\x1b]0;pwned\x07\r\x1b[2Kroot\x9b1m\nx\u2028y"
    record = {name: "" for name in FIELDS}
    record.update(time="2026-11-26T03:40:00.000Z", actor=typed, action="login")
    header, row = format_table([record]).split("\n")  # one line per record
    assert row.isprintable() and header.isprintable()
    assert "eve\ufffd]0;pwned\ufffd\ufffd\ufffd[2K" in row  # shown, not obeyed


def test_time_forms():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("3d", now) == now - timedelta(days=3)
    assert parse_time("2026-11-26", now) == datetime(2026, 11, 26, tzinfo=UTC)
    assert parse_time("2026-11-26T10:00+02:00", now).hour == 10
    with pytest.raises(ValueError, match="30m, 2h, 3d"):
        parse_time("last tuesday", now)
    assert Query(since=now).matches({"time": "garbage"}) is False


# --- logins: the real authenticators --------------------------------------------------
def demo_config(tmp_path) -> Config:
    (tmp_path / "users.yaml").write_text(USERS)
    write_password_hash(str(tmp_path / "pw.hash"), PASSWORD)
    c = Config()
    c.DemoAuthenticator.password_file = str(tmp_path / "pw.hash")
    c.StaticIdentity.path = str(tmp_path / "users.yaml")
    c.AuditLog.destination = "file"
    c.AuditLog.path = str(tmp_path / "audit.log")
    return c


async def login(auth, username, password):
    return await auth.get_authenticated_user(
        None, {"username": username, "password": password}
    )


async def test_logins_ok_and_failed_and_never_the_password(tmp_path):
    c = demo_config(tmp_path)
    auth = DemoAuthenticator(config=c)
    assert await login(auth, " Alice", WRONG) is None
    assert (await login(auth, "alice", PASSWORD))["name"] == "alice"
    assert await login(auth, "mallory", PASSWORD) is None  # not in the directory
    log = audit_log(c)
    log.flush()
    failed, ok, unknown = lines(tmp_path / "audit.log")
    assert failed["action"] == ok["action"] == "login"
    assert (failed["actor"], failed["outcome"]) == ("alice", "failed")
    assert failed["reason"] == "bad credentials"
    assert (ok["actor"], ok["target"], ok["outcome"], ok["reason"]) == (
        "alice",
        "alice",
        "ok",
        "",
    )
    assert (unknown["actor"], unknown["reason"]) == ("mallory", "unknown user")
    text = (tmp_path / "audit.log").read_text()
    assert WRONG not in text and PASSWORD not in text
    assert WRONG not in json.dumps(log.recent())
    log.close()


async def test_ldap_unreachable_is_a_failed_login_and_an_ldap_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"ldap://127.0.0.1:{s.getsockname()[1]}"
    c = Config()
    c.LDAPIdentity.server_urls = [url]
    c.LDAPIdentity.user_search_base = "ou=people,dc=example,dc=org"
    c.LDAPIdentity.connect_timeout = 1.0
    c.LDAPIdentity.lookup_timeout = 2.0
    c.LDAPIdentityAuthenticator.allow_all = True
    c.AuditLog.destination = "off"
    errors = metrics.LDAP_ERRORS.labels(operation="check_password", kind="error")
    before = errors._value.get()
    auth = LDAPIdentityAuthenticator(config=c)
    assert await login(auth, "alice", WRONG) is None  # no page: no message
    record = audit_log(c).recent(action="login")[-1]
    assert (record["actor"], record["outcome"]) == ("alice", "failed")
    assert record["reason"] == "directory unreachable"
    assert WRONG not in json.dumps(record)
    assert errors._value.get() == before + 1
