"""A real OpenLDAP ``slapd`` for tests: mdb backend, memberof overlay, temp dir.

volatildap hardcodes the ``hdb`` backend, which OpenLDAP 2.5 removed, so we
start slapd ourselves. Entries are added *online* with ``ldapadd`` (not
slapadd) because the memberof overlay only maintains ``memberOf`` on writes.

Use it in a test module with ``pytest_plugins = ["ldap_server"]`` and the
session-scoped ``slapd`` fixture.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

SLAPD = os.environ.get("AALTOHUB_TEST_SLAPD", "/usr/sbin/slapd")
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "admin-secret"
# A read-only service account, as a deployment would use for searches.
SERVICE_DN = f"cn=hub,ou=services,{SUFFIX}"
SERVICE_PW = "hub-secret"

# AD-style naming emulated on OpenLDAP: an auxiliary class carrying
# sAMAccountName, so tests can configure LDAPIdentity the way an AD site would.
TEST_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'aaltohubTestADUser'
    SUP top AUXILIARY MAY ( sAMAccountName ) )
"""


def _person(uid, number, cn, display, mail, password, sam=""):
    lines = [
        f"dn: uid={uid},ou=people,{SUFFIX}",
        "objectClass: inetOrgPerson",
        "objectClass: posixAccount",
        "objectClass: aaltohubTestADUser",
        f"uid: {uid}",
        f"cn: {cn}",
        f"sn: {cn.split()[-1]}",
        f"uidNumber: {number}",
        f"gidNumber: {number}",
        f"homeDirectory: /home/{uid}",
        f"userPassword: {password}",
    ]
    if display:
        lines.append(f"displayName: {display}")
    if mail:
        lines.append(f"mail: {mail}")
    if sam:
        lines.append(f"sAMAccountName: {sam}")
    return "\n".join(lines) + "\n"


def default_ldif() -> str:
    """People, posixGroups (memberUid) and groupOfNames roles (memberOf)."""
    parts = [
        textwrap.dedent(f"""\
            dn: {SUFFIX}
            objectClass: dcObject
            objectClass: organization
            dc: example
            o: Example University

            dn: ou=people,{SUFFIX}
            objectClass: organizationalUnit
            ou: people

            dn: ou=groups,{SUFFIX}
            objectClass: organizationalUnit
            ou: groups

            dn: ou=roles,{SUFFIX}
            objectClass: organizationalUnit
            ou: roles

            dn: ou=services,{SUFFIX}
            objectClass: organizationalUnit
            ou: services

            dn: {SERVICE_DN}
            objectClass: organizationalRole
            objectClass: simpleSecurityObject
            cn: hub
            userPassword: {SERVICE_PW}
            """),
        _person(
            "alice",
            10001,
            "Alice A",
            "Alice Andersson",
            "alice@example.org",
            "alice-pw",
            sam="aanders",
        ),
        _person("bob", 10002, "Bob B", "Bob Berg", "bob@example.org", "bob-pw"),
        # carol has no displayName or mail: the name must fall back to cn.
        _person("carol", 10003, "Carol Carlsson", "", "", "carol-pw"),
        # A system account that exists in LDAP: must be refused by min_uid.
        _person("sysacct", 500, "System Account", "", "", "sys-pw"),
        textwrap.dedent(f"""\
            dn: cn=students,ou=groups,{SUFFIX}
            objectClass: posixGroup
            cn: students
            gidNumber: 20001
            memberUid: alice
            memberUid: bob

            dn: cn=teachers,ou=groups,{SUFFIX}
            objectClass: posixGroup
            cn: teachers
            gidNumber: 20002
            memberUid: carol
            memberUid: alice

            dn: cn=course-cs101,ou=roles,{SUFFIX}
            objectClass: groupOfNames
            cn: course-cs101
            member: uid=alice,ou=people,{SUFFIX}
            member: uid=bob,ou=people,{SUFFIX}

            dn: cn=staff,ou=roles,{SUFFIX}
            objectClass: groupOfNames
            cn: staff
            member: uid=carol,ou=people,{SUFFIX}
            """),
    ]
    return "\n".join(parts)


def people_ldif(names: list[str], first_uid: int, role: str) -> str:
    """Users ``names`` (password ``{name}-pw``, uids from ``first_uid``),
    all members of the memberOf role ``role``: for bursts and benchmarks."""
    people = [
        _person(n, first_uid + i, f"Student {n}", f"Student {n}", "", f"{n}-pw")
        for i, n in enumerate(names)
    ]
    members = "".join(f"member: uid={n},ou=people,{SUFFIX}\n" for n in names)
    group = (
        f"dn: cn={role},ou=roles,{SUFFIX}\nobjectClass: groupOfNames\n"
        f"cn: {role}\n{members}"
    )
    return "\n".join(people) + "\n" + group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    """One slapd process in its own temp dir; ``start()`` / ``stop()``."""

    suffix = SUFFIX
    root_dn = ROOT_DN
    service_dn = SERVICE_DN
    service_password = SERVICE_PW

    def __init__(self, ldif: str | None = None):
        self.ldif = default_ldif() if ldif is None else ldif
        self.dir = Path(tempfile.mkdtemp(prefix="aaltohub-slapd-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        (self.dir / "db").mkdir(exist_ok=True)
        (self.dir / "test.schema").write_text(TEST_SCHEMA)
        lines = [f"include {SCHEMA_DIR / n}.schema" for n in _SCHEMAS]
        lines += [
            f"include {self.dir / 'test.schema'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            "moduleload memberof",
            f"pidfile {self.dir / 'slapd.pid'}",
            f"argsfile {self.dir / 'slapd.args'}",
            "database mdb",
            "maxsize 10485760",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {self.dir / 'db'}",
            "index objectClass,uid,memberUid,cn,member eq",
            "overlay memberof",
            # Like a campus directory: passwords only for binding, and reading
            # needs a bound (service) account.
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by anonymous auth by * none",
        ]
        conf = self.dir / "slapd.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 15.0) -> None:
        conf = self._write_config()
        self._log = open(self.dir / "slapd.log", "wb")  # noqa: SIM115
        last_err = ""
        for _attempt in range(3):  # a free port can be taken in between
            self.port = free_port()
            # -d keeps slapd in the foreground so we own the process; no -u/-g,
            # so it runs as whoever runs the tests (root or not).
            self.proc = subprocess.Popen(
                [SLAPD, "-f", str(conf), "-h", self.url + "/", "-d", "0"],
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
            if self._wait_ready(timeout):
                self.add(self.ldif)
                return
            last_err = self._kill()
        raise RuntimeError(f"slapd did not start: {last_err}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def add(self, ldif: str) -> None:
        """Add entries online (so memberof sees them)."""
        path = self.dir / "data.ldif"
        path.write_text(ldif)
        subprocess.run(
            [
                LDAPADD,
                "-x",
                "-H",
                self.url,
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PW,
                "-f",
                str(path),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def _kill(self) -> str:
        err = ""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            log = self.dir / "slapd.log"
            err = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return err

    def stop(self) -> None:
        self._kill()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def slapd_available() -> str | None:
    """None if slapd can run here, else the reason to skip."""
    for path in (SLAPD, LDAPADD, MODULE_DIR / "back_mdb.so", SCHEMA_DIR / "nis.schema"):
        if not os.path.exists(path):
            return f"{path} not found (apt-get install slapd ldap-utils)"
    return None


@pytest.fixture(scope="session")
def slapd():
    reason = slapd_available()
    if reason:
        pytest.skip(f"OpenLDAP slapd is needed for LDAP tests: {reason}")
    server = Slapd()
    server.start()
    yield server
    server.stop()
