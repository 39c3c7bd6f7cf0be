"""Loading untrusted YAML: libyaml's speed, with limits.

Course files are written by course editors, a less trusted party than the
deployer. :func:`load_yaml` parses with libyaml's safe loader when the
installed libyaml limits nesting itself (older versions recurse in C until
the process crashes), then checks the node tree: no collection nested
deeper than :data:`MAX_DEPTH`, aliases that expand to no more than
:data:`MAX_ALIAS_EXPANSION` values, no alias that contains itself, and no
duplicate key (named with its line).
"""

from __future__ import annotations

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, ScalarNode

#: Collections nested deeper than this are refused. Course files nest about
#: five levels; libyaml's own limit is 1000, and older libyaml versions
#: recurse in C without any limit (a segfault, not an exception).
MAX_DEPTH = 32
#: Values that aliases may repeat, in total, per file. A few shared blocks
#: stay far below; a "billion laughs" file is refused at its fourth level.
MAX_ALIAS_EXPANSION = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def libyaml_limits_depth() -> bool:
    """Whether libyaml refuses deep nesting itself (0.2.5 and later stop at
    1000 levels). With an older libyaml, PyYAML's C composer recurses on the
    C stack as deep as a file nests: a crash, not an exception."""
    depth = 1100  # deep enough to hit the limit, shallow enough to be safe
    try:
        yaml.load("[" * depth + "]" * depth, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return True
    return False


# libyaml's safe loader is ~10x faster than the pure-Python one; same rules.
_BASE_LOADER = (
    yaml.CSafeLoader
    if getattr(yaml, "CSafeLoader", None) and libyaml_limits_depth()
    else yaml.SafeLoader
)


class _Checker:
    """Limits on a composed document, before anything is built from it.

    Aliases are shared node objects, so the document stays small; what they
    would expand to (in a repr(), a JSON manifest, a deep copy) is counted.
    Only collections are visited one by one; recursion depth is bounded by
    MAX_DEPTH."""

    def __init__(self):
        self.done: dict[int, tuple[int, int]] = {}  # node -> (size, height)
        self.open: set[int] = set()  # collections being visited
        self.expanded = 0  # nodes that aliases repeat

    def visit(self, node, depth: int) -> tuple[int, int]:
        """(expanded size, height) of a collection at nesting level depth."""
        if depth > MAX_DEPTH:
            raise _problem(f"values are nested deeper than {MAX_DEPTH} levels", node)
        if type(node) is MappingNode:
            _check_keys(node)
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value
        self.open.add(id(node))
        size, height = 1 + len(children), 1
        for child in children:
            if type(child) is ScalarNode:
                continue  # a repeated scalar costs what its alias costs
            known = self.done.get(id(child))
            if known is None:
                if id(child) in self.open:
                    raise _problem("an alias refers to a value that contains it", node)
                known = self.visit(child, depth + 1)
            else:  # met before: this is an alias of it
                self.expanded += known[0]
                if self.expanded > MAX_ALIAS_EXPANSION:
                    raise _problem(
                        f"aliases expand to more than {MAX_ALIAS_EXPANSION} values;"
                        " write the values out or use fewer aliases",
                        node,
                    )
                if depth + known[1] > MAX_DEPTH:
                    raise _problem(
                        f"values are nested deeper than {MAX_DEPTH} levels", node
                    )
            size += known[0] - 1
            height = max(height, known[1] + 1)
        self.open.discard(id(node))
        self.done[id(node)] = (size, height)
        return size, height


def _check_keys(node) -> None:
    # YAML says keys are unique; PyYAML silently keeps the last one. A merge
    # key ("<<") may repeat, and what it merges may be overridden.
    seen = set()
    for key, _ in node.value:
        if type(key) is ScalarNode and key.tag != _MERGE_TAG:
            if (key.tag, key.value) in seen:
                raise _problem(
                    f"duplicate key {key.value[:60]!r}; each key may appear only"
                    " once (the last one would silently win)",
                    key,
                )
            seen.add((key.tag, key.value))


def _problem(text: str, node) -> yaml.YAMLError:
    return ComposerError(None, None, text, node.start_mark if node else None)


def limited_loader(base: type) -> type:
    """``base`` (a PyYAML safe loader class) with the limits for untrusted
    files: nesting depth, alias expansion, and no duplicate keys."""

    class Loader(base):
        def get_single_node(self):
            try:
                node = super().get_single_node()
            except RecursionError:  # the pure-Python composer recurses
                raise _problem(
                    f"values are nested deeper than {MAX_DEPTH} levels", None
                ) from None
            if node is not None and type(node) is not ScalarNode:
                _Checker().visit(node, 1)
            return node

    Loader.__name__ = Loader.__qualname__ = f"Limited{base.__name__}"
    return Loader


#: The loader of course files: libyaml's safe loader when safe, with limits.
CourseLoader = limited_loader(_BASE_LOADER)


def load_yaml(text: str):
    """Parse one untrusted YAML document; raises yaml.YAMLError, or
    ValueError for a value PyYAML cannot build (e.g. the date 2024-13-45)."""
    loader = CourseLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
