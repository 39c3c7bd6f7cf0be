"""QuotaPolicy: who is warned about their quota, and how.

The one place the quota source, the warning threshold and the help text
are configured. The spawn hook (:class:`aaltohub.hooks.quota.QuotaHook`),
the warnings on the hub's pages (:mod:`aaltohub.web.quota`) and the admin
report (``aaltohub quota report``) all read them from here.
"""

from __future__ import annotations

from traitlets import Float, TraitError, Type, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..deprecation import adopt_moved_options
from ..shared import shared_instance
from .quota import FREE_SPACE_HELP, NoQuota, QuotaSource, Usage

#: Warn from this fraction of the quota (0.9 = 90 %). One unit everywhere:
#: the spawn hook, the hub's pages and ``aaltohub quota report``.
DEFAULT_THRESHOLD = 0.9


class QuotaPolicy(LoggingConfigurable):
    """Who is warned about their quota, from what source, and how to fix it."""

    source_class = Type(
        NoQuota,
        klass=QuotaSource,
        help="""Where usage comes from: ``aaltohub.storage.ReportFileQuota``
        (a repquota / xfs_quota report file), ``aaltohub.storage.StatvfsQuota``
        (per-user volumes) or ``aaltohub.storage.NoQuota`` (nobody is warned).""",
    ).tag(config=True)

    threshold = Float(
        DEFAULT_THRESHOLD,
        help="Fraction of the quota (0.9 = 90 %) from which users are warned.",
    ).tag(config=True)

    free_space_help = Unicode(
        FREE_SPACE_HELP,
        help="How to free space, in the words of your site; shown with warnings.",
    ).tag(config=True)

    MOVED = {
        ("QuotaHook", "source_class"): "source_class",
        ("QuotaHook", "threshold"): "threshold",
        ("QuotaHook", "free_space_help"): "free_space_help",
        ("QuotaWarnings", "source_class"): "source_class",
        ("QuotaWarnings", "threshold"): "threshold",
        ("QuotaWarnings", "free_space_help"): "free_space_help",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        adopt_moved_options(self, self.MOVED)

    @validate("threshold")
    def _valid_threshold(self, proposal):
        if not 0 < proposal.value <= 1:
            raise TraitError(
                f"c.QuotaPolicy.threshold = {proposal.value!r}: give a fraction"
                " of the quota between 0 and 1, e.g. 0.9 for 90 %"
            )
        return proposal.value

    @property
    def source(self) -> QuotaSource:
        """The configured source, one per hub config (it keeps caches). A
        report source is given the threshold here, so each new report sets
        aaltohub_quota_users_over_threshold whichever part reads it (the
        spawn hook alone, the hub's pages, the course page)."""
        source = shared_instance(self.source_class, self.config)
        if hasattr(source, "warn_threshold"):
            source.warn_threshold = self.threshold
        return source

    def warns(self, usage: Usage | None) -> bool:
        return usage is not None and usage.over_threshold(self.threshold)
