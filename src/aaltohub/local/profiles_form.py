"""Course profiles for any spawner: the options form and the plan.

``CourseProfilesMixin`` gives any non-Kubernetes Spawner the same catalog,
access rules and hooks as CourseSpawner (through CourseSpawnMixin): the
options form and its strict parsing. ``start()`` then calls
:meth:`~aaltohub.spawn.CourseSpawnMixin.plan_spawn`, which authorizes,
plans and calls the spawner's ``apply_plan``.
"""

from __future__ import annotations

import html
import re

from traitlets import default

from ..spawn import CourseSpawnMixin, user_error

PROFILE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,120}")


def profile_form(profiles: list[dict]) -> str:
    """The options form: one radio button per profile, field name ``profile``.

    ``display_name`` and ``description`` are HTML, as in KubeSpawner's
    profile_list (ProfileBuilder escapes course text); the slug is escaped
    here because it goes into an attribute.
    """
    if not profiles:
        return (
            "<p>No course environments are available to you. If you take a"
            " course, ask its instructors to add you to the course list.</p>"
        )
    chosen = next((p for p in profiles if p.get("default")), profiles[0])
    rows = []
    for i, p in enumerate(profiles):
        slug = html.escape(str(p.get("slug", "")), quote=True)
        checked = " checked" if p is chosen else ""
        desc = p.get("description") or ""
        # Kept short: a catalog may offer hundreds of courses, and every
        # byte is sent with each spawn page (the style is set once, below).
        rows.append(
            f'<label for="p{i}"><input type="radio" name="profile" id="p{i}"'
            f' value="{slug}"{checked}> <strong>{p.get("display_name", slug)}</strong>'
            + (f' <span class="text-muted">{desc}</span>' if desc else "")
            + "</label>"
        )
    return (
        "<style>.aaltohub-profiles label{display:block;margin:0.4em 0}</style>"
        '<fieldset class="aaltohub-profiles"><legend>Choose a course'
        " environment</legend>" + "".join(rows) + "</fieldset>"
    )


class CourseProfilesMixin(CourseSpawnMixin):
    """Course profiles for spawners without KubeSpawner's profile_list.

    Put it first in the bases of any Spawner (``class
    CourseDockerSpawner(CourseProfilesMixin, DockerSpawner)``): it renders
    the options form from the same profile list as CourseSpawner, reads it
    strictly (HTTP 400) and checks access (HTTP 403, in CourseSpawnMixin).
    Its ``start()`` calls ``await self.plan_spawn()`` and implements
    ``apply_plan`` for its backend.
    """

    @default("options_form")
    def _default_options_form(self):
        return CourseProfilesMixin._options_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # The only option, "profile", is checked and applied in start().
        return _options_applied_in_start

    # --- the form ----------------------------------------------------------------
    async def _options_form(self) -> str:
        return profile_form(await self.course_profiles())

    def options_from_form(self, formdata):
        """``{"profile": slug}``, or HTTP 400 naming what is wrong.

        Other fields (``_xsrf``, anything a newer hub adds) are ignored.
        CourseSpawnMixin.run_options_from_form then checks access (403).
        """
        values = formdata.get("profile")
        problem = None
        if not values or values == [""]:
            problem = "no course environment was chosen"
        elif not isinstance(values, list) or len(values) != 1:
            problem = "more than one course environment was chosen"
        elif not isinstance(values[0], str) or not PROFILE_RE.fullmatch(values[0]):
            problem = "the chosen course environment is not a valid name"
        if problem:
            raise user_error(
                400,
                f"The server options form could not be read: {problem}. Reload"
                " the page and pick one of the listed course environments.",
            )
        return {"profile": values[0]}


def _options_applied_in_start(spawner, user_options):
    return None
