"""Which courses a user is offered, without testing every course.

A catalog of 1,000 courses and 50,000 roster entries answers the spawn
page of every user in a term-start burst, so the answer must not cost a
test of every course. :class:`CourseIndex` keeps, per catalog generation:

- which courses name each user (roster) and each group (student,
  instructor and course groups), and which courses are public;
- the display order.

A user's offer is then two parts, both decided by the one rule,
:func:`aaltohub.access.visible_roles`:

- the courses that name the user or one of the user's groups, each
  checked for this user;
- the public courses that do not: for those the user is a *stranger*,
  and the rule gives every stranger the same roles. That part is computed
  once for a viewer on no course and shared by every user for
  ``offer_cache_seconds``. With a user's own cached offer on top, what a
  user is *shown* may be up to twice that old when a term ends (every
  spawn is authorized afresh anyway, with the clock of that moment).

Admins and default instructors are on every course: each course is
checked for them.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict, defaultdict

from ..access import RoleRules, Viewer, visible_roles
from ..course import Course
from ..term import now_utc

#: Users whose offers are kept at once; the oldest go first.
OFFER_CACHE_SIZE = 4096

#: Someone on no course and in no group: who the public part is for.
STRANGER = Viewer(username="")

Offer = tuple[Course, tuple[str, ...]]


class CourseIndex:
    """The per-user index of a catalog's courses, and the offers from it.

    ``courses`` is the catalog's own dict (slug -> Course), read here, never
    changed. The catalog calls :meth:`add` and :meth:`remove` as course
    files change and :meth:`reorder` once after each batch.
    """

    def __init__(self, courses: dict[str, Course]) -> None:
        self.courses = courses
        self.public: set[str] = set()
        self.by_user: dict[str, set[str]] = defaultdict(set)
        self.by_group: dict[str, set[str]] = defaultdict(set)
        self.ordered: list[str] = []
        self.position: dict[str, int] = {}
        #: Bumped by every reorder: anything cached from an older one is stale.
        self.generation = 0
        # (viewer, rules) -> (generation, time, offers): bounded, oldest out
        self._offers: OrderedDict[tuple, tuple] = OrderedDict()
        # rules -> (generation, time, [(position, course, roles)])
        self._strangers: dict[RoleRules, tuple] = {}

    # --- keeping it current ----------------------------------------------------
    @staticmethod
    def _keys(course: Course, rules: RoleRules):
        users = course.students | course.instructors
        groups = {rules.instructor_group(course)}
        groups |= course.instructor_groups | course.student_groups
        return users, groups

    def add(self, course: Course, rules: RoleRules) -> None:
        if not course.private and not course.archive:
            self.public.add(course.slug)
        users, groups = self._keys(course, rules)
        for u in users:
            self.by_user[u].add(course.slug)
        for g in groups:
            self.by_group[g].add(course.slug)

    def remove(self, course: Course, rules: RoleRules) -> None:
        self.public.discard(course.slug)
        users, groups = self._keys(course, rules)
        for keys, index in ((users, self.by_user), (groups, self.by_group)):
            for key in keys:
                bucket = index.get(key)
                if bucket is not None:
                    bucket.discard(course.slug)
                    if not bucket:
                        del index[key]

    def reorder(self) -> None:
        """Sort by display name after a batch of changes; a new generation."""
        self.ordered = sorted(
            self.courses, key=lambda s: (self.courses[s].name.lower(), s)
        )
        self.position = {slug: i for i, slug in enumerate(self.ordered)}
        self.generation += 1

    # --- offers ------------------------------------------------------------------
    def related(self, who: Viewer) -> set[str]:
        """Slugs of the courses that name ``who`` or one of their groups
        (roster, student, instructor or course group): the only courses on
        which ``who`` can be anything but a stranger, unless ``who`` is an
        admin or a default instructor."""
        related = set(self.by_user.get(who.username, ()))
        for group in who.groups:
            related |= self.by_group.get(group, set())
        return related

    def offered_to(self, who: Viewer, rules: RoleRules, cache_seconds: float):
        """Courses ``who`` may start, with roles, in display order; reused
        for ``cache_seconds`` within one generation."""
        key = (who, rules)
        now = time.monotonic()
        hit = self._offers.get(key)
        if self._fresh(hit, now, cache_seconds):
            return list(hit[2])
        out = self._offered_now(who, rules, cache_seconds)
        if cache_seconds > 0:
            self._offers[key] = (self.generation, now, tuple(out))
            self._offers.move_to_end(key)
            while len(self._offers) > OFFER_CACHE_SIZE:
                self._offers.popitem(last=False)
        return out

    def _offered_now(self, who: Viewer, rules: RoleRules, cache_seconds: float):
        now = now_utc()  # one clock reading for the whole list
        if who.admin or who.username in rules.default_instructors:
            everything = (self.courses[slug] for slug in self.ordered)
            return [
                (course, roles)
                for course in everything
                if (roles := visible_roles(course, who, rules, now))
            ]
        related = self.related(who)
        strangers = self._stranger_offers(rules, now, cache_seconds)
        overlap = related & self.public  # public courses the user is on
        if overlap:
            picked = [entry for entry in strangers if entry[1].slug not in overlap]
        else:
            picked = list(strangers)
        for slug in related:
            course = self.courses.get(slug)
            if course is not None and (roles := visible_roles(course, who, rules, now)):
                # positions are unique: tuples never compare their courses
                bisect.insort(picked, (self.position[slug], course, roles))
        return [(course, roles) for _pos, course, roles in picked]

    def _fresh(self, hit: tuple | None, clock: float, cache_seconds: float) -> bool:
        return (
            hit is not None
            and hit[0] == self.generation
            and clock - hit[1] < cache_seconds
        )

    def _stranger_offers(self, rules: RoleRules, now, cache_seconds: float) -> list:
        """[(position, course, roles)] of the public courses, for a viewer on
        none of them, in display order."""
        hit = self._strangers.get(rules)
        clock = time.monotonic()
        if self._fresh(hit, clock, cache_seconds):
            return hit[2]
        entries = []
        for slug in self.ordered:
            if slug not in self.public:
                continue
            course = self.courses[slug]
            roles = visible_roles(course, STRANGER, rules, now)
            if roles:
                entries.append((self.position[slug], course, roles))
        self._strangers = {rules: (self.generation, clock, entries)}
        return entries
