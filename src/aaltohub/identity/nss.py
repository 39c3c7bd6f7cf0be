"""NSSIdentity: identities from the host's name service (pwd/grp).

This is what a hub node joined to the campus directory with sssd or
nslcd sees: ``getent passwd`` and ``getent group``. The calls can block on
the network, which is why they run in the provider's thread pool.
"""

from __future__ import annotations

import grp
import os
import pwd

from traitlets import TraitError, Unicode, validate

from .base import Identity, IdentityProvider


class NSSIdentity(IdentityProvider):
    """Identities from ``getpwnam`` / ``getgrouplist``, e.g. through sssd."""

    source_name = "the system user database (NSS)"

    email_template = Unicode(
        "",
        help="""Template for the user's email address, with ``{username}``
        replaced, e.g. ``{username}@example.org``. NSS has no email field;
        leave empty to store no email.""",
    ).tag(config=True)

    @validate("email_template")
    def _check_email_template(self, proposal):
        template = proposal["value"]
        try:
            template.format(username="x")
        except (KeyError, IndexError, ValueError) as e:
            raise TraitError(
                f"NSSIdentity.email_template {template!r} is not a valid "
                f"template ({e!r}); the only placeholder is {{username}}."
            ) from e
        return template

    def lookup_sync(self, username: str) -> Identity | None:
        try:
            pw = pwd.getpwnam(username)
        except KeyError:
            return None
        groups = set()
        for gid in os.getgrouplist(pw.pw_name, pw.pw_gid):
            try:
                groups.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                # A gid without a name (e.g. a stale NFS group): nothing to
                # match course rules against, so skip it.
                continue
        return Identity(
            username=username,
            uid=pw.pw_uid,
            gid=pw.pw_gid,
            home=pw.pw_dir,
            # GECOS is "Full Name,room,phone,..."; only the name is useful.
            name=pw.pw_gecos.split(",", 1)[0].strip(),
            email=self.email_template.format(username=username)
            if self.email_template
            else "",
            groups=frozenset(groups),
        )
