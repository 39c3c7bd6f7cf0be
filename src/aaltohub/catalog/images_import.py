"""Read Aalto's ``IMAGES.py`` as data, without running it.

Aalto's hub exec'd ``/courses/meta/IMAGES.py`` into its config's globals.
Here the file is parsed with :mod:`ast` and only these forms are understood;
anything else is named as not converted, never run:

* statements: ``NAME = expr`` and ``NAME: type = expr``; ``NAME += expr``;
  ``NAME[key] = expr``; ``NAME.append(expr)`` / ``NAME.extend(expr)`` (also
  on ``NAME[key]``); a docstring; ``import datetime`` / ``from datetime
  import date`` (and ``typing``), which are ignored;
* expressions: strings, numbers, ``None``, True/False; lists, tuples and
  dicts of these (``**NAME`` inside a dict); names assigned earlier; ``+``
  of two strings or two lists; f-strings whose fields are names or
  literals, without conversions or format specs; ``date(Y, M, D)``,
  ``datetime.date(Y, M, D)`` and ``date.fromisoformat("YYYY-MM-DD")``.

What the hub used: ``IMAGE_<NAME>`` strings (aliases, looked up as
``<NAME>`` or ``IMAGE_<NAME>``), ``IMAGES_BYDATE`` (dated series) and
``IMAGES_OLD`` (old-version profiles). Other uppercase strings become
aliases of their own name, as Aalto's lookup found them too.
"""

from __future__ import annotations

import ast
import datetime
from dataclasses import dataclass, field

import yaml

from .images import ALIAS_PREFIX, ImageTable, parse_images

_ALLOWED_IMPORTS = {"datetime", "typing", "__future__"}


class Unsupported(ValueError):
    """An expression or statement outside the understood forms."""


@dataclass
class ImagesImport:
    """What was read from one IMAGES.py."""

    source: str
    aliases: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[tuple[datetime.date, str]]] = field(default_factory=dict)
    old: list[dict] = field(default_factory=list)
    #: "line N: what and why" for everything not converted.
    skipped: list[str] = field(default_factory=list)
    #: Uppercase text that is no image name (e.g. VERSION): used while
    #: reading, not an alias.
    helpers: list[str] = field(default_factory=list)

    def data(self) -> dict:
        """The images file's content (``IMAGES.yaml``)."""
        out: dict = {"aliases": dict(sorted(self.aliases.items()))}
        out["series"] = {
            name: [[when, image] for when, image in sorted(entries)]
            for name, entries in sorted(self.series.items())
        }
        if self.old:
            out["old"] = list(self.old)
        return out

    def table(self) -> ImageTable:
        return parse_images(self.data(), self.source)

    def to_yaml(self) -> str:
        head = [f"# Converted from {self.source} by 'aaltohub images import'."]
        head += [f"# NOT CONVERTED: {line}" for line in self.skipped]
        if self.helpers:
            head.append(f"# helper values, not aliases: {', '.join(self.helpers)}")
        body = yaml.safe_dump(
            self.data(), sort_keys=False, default_flow_style=False, width=1000
        )
        return "\n".join(head) + "\n" + body


def _date(node: ast.Call, value) -> datetime.date:
    func = node.func
    name = ast.unparse(func)
    args = [value(a) for a in node.args]
    if node.keywords:
        raise Unsupported(f"{name}() with keyword arguments")
    if name in ("date", "datetime.date") and all(type(a) is int for a in args):
        return datetime.date(*args)
    if name in ("date.fromisoformat", "datetime.date.fromisoformat") and len(args) == 1:
        return datetime.date.fromisoformat(args[0])
    raise Unsupported(f"call of {name}(): only date(Y, M, D) is understood")


class _Reader:
    def __init__(self, result: ImagesImport):
        self.result = result
        self.env: dict = {}

    # --- expressions -----------------------------------------------------------
    def value(self, node):
        if isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, str | int | float | bool)
        ):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in self.env:
                raise Unsupported(f"name {node.id} is not defined in this file")
            return self.env[node.id]
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.value(node.left), self.value(node.right)
            if type(left) is type(right) and isinstance(left, str | list):
                return left + right
            raise Unsupported("'+' of values that are not both text or both lists")
        if isinstance(node, ast.JoinedStr):
            return "".join(self._fpart(p) for p in node.values)
        if isinstance(node, ast.Subscript):
            container, key = self.value(node.value), self.value(node.slice)
            if not isinstance(container, dict | list):
                raise Unsupported("indexing something that is not a dict or list")
            return container[key]
        if isinstance(node, ast.Call):
            return _date(node, self.value)
        raise Unsupported(f"expression {ast.unparse(node)!r}")

    def _dict(self, node: ast.Dict) -> dict:
        out = {}
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:  # {**OTHER}
                merged = self.value(item)
                if not isinstance(merged, dict):
                    raise Unsupported("'**' of something that is not a dict")
                out.update(merged)
            else:
                out[self.value(key)] = self.value(item)
        return out

    def _fpart(self, part) -> str:
        if isinstance(part, ast.Constant):
            return part.value
        if part.conversion != -1 or part.format_spec is not None:
            raise Unsupported("f-string field with a conversion or format spec")
        if not isinstance(part.value, ast.Name | ast.Constant):
            raise Unsupported("f-string field that is not a name")
        return str(self.value(part.value))

    # --- statements --------------------------------------------------------------
    def statement(self, node) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in getattr(node, "names", [])]
            if isinstance(node, ast.ImportFrom) and node.module in _ALLOWED_IMPORTS:
                return
            if all(n.split(".")[0] in _ALLOWED_IMPORTS for n in names if n):
                return
            raise Unsupported("import of a module other than datetime/typing")
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # a docstring or a bare literal
        if isinstance(node, ast.Assign):
            value = self.value(node.value)
            for target in node.targets:
                self._store(target, value)
            return
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            self._store(node.target, self.value(node.value))
            return
        if (
            isinstance(node, ast.AugAssign)
            and isinstance(node.op, ast.Add)
            and isinstance(node.target, ast.Name)
        ):
            current, added = self.value(node.target), self.value(node.value)
            if type(current) is not type(added) or not isinstance(current, str | list):
                raise Unsupported("'+=' of values that are not both text or lists")
            self.env[node.target.id] = current + added
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            self._method(node.value)
            return
        raise Unsupported(f"{type(node).__name__} statement")

    def _store(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, ast.Subscript):
            container = self.value(target.value)
            if not isinstance(container, dict):
                raise Unsupported("item assignment to something that is not a dict")
            container[self.value(target.slice)] = value
        else:
            raise Unsupported(f"assignment to {ast.unparse(target)!r}")

    def _method(self, call: ast.Call) -> None:
        func = call.func
        if (
            not isinstance(func, ast.Attribute)
            or func.attr not in ("append", "extend")
            or len(call.args) != 1
            or call.keywords
        ):
            raise Unsupported(f"call {ast.unparse(call)!r}")
        target = self.value(func.value)
        if not isinstance(target, list):
            raise Unsupported(f"{func.attr}() on something that is not a list")
        getattr(target, func.attr)(self.value(call.args[0]))


def _looks_like_image(value: str) -> bool:
    return ("/" in value or ":" in value) and not any(c.isspace() for c in value)


def _collect(result: ImagesImport, env: dict) -> None:
    plain = {}
    for name, value in env.items():
        if not (isinstance(value, str) and name.isupper()):
            continue
        if name.startswith(ALIAS_PREFIX) and len(name) > len(ALIAS_PREFIX):
            result.aliases[name[len(ALIAS_PREFIX) :]] = value
        else:
            plain[name] = value
    for name, value in plain.items():
        if not _looks_like_image(value):
            result.helpers.append(name)  # e.g. VERSION = "5.0.4"
        elif name in result.aliases:
            # Aalto's lookup tries IMAGE_<NAME> first, so this one was unused
            result.skipped.append(f"{name}: shadowed by {ALIAS_PREFIX}{name}")
        else:
            result.aliases[name] = value
    _collect_series(result, env.get("IMAGES_BYDATE"))
    _collect_old(result, env.get("IMAGES_OLD"))


def _collect_series(result: ImagesImport, bydate) -> None:
    if bydate is None:
        return
    if not isinstance(bydate, dict):
        result.skipped.append("IMAGES_BYDATE: not a dict of series")
        return
    for name, entries in bydate.items():
        pairs = []
        for entry in entries if isinstance(entries, list) else [None]:
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and type(entry[0]) is datetime.date
                and isinstance(entry[1], str)
            ):
                pairs.append((entry[0], entry[1]))
            else:
                result.skipped.append(
                    f"IMAGES_BYDATE[{name!r}]: entry {entry!r} is not (date, image)"
                )
        if isinstance(name, str) and pairs:
            result.series[name] = pairs


def _collect_old(result: ImagesImport, old) -> None:
    if old is None:
        return
    for entry in old if isinstance(old, list) else [old]:
        if (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str | None)
            and isinstance(entry[1], str)
        ):
            result.old.append({"name": entry[0], "image": entry[1]})
        else:
            result.skipped.append(f"IMAGES_OLD: entry {entry!r} is not (name, image)")


def import_images(text: str, source: str = "IMAGES.py") -> ImagesImport:
    """Convert the text of an Aalto IMAGES.py; never executes it."""
    result = ImagesImport(source)
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as e:
        result.skipped.append(f"line {e.lineno}: not Python ({e.msg}); nothing read")
        return result
    reader = _Reader(result)
    for node in tree.body:
        try:
            reader.statement(node)
        except (Unsupported, ValueError, TypeError, KeyError) as e:
            code = ast.get_source_segment(text, node) or type(node).__name__
            first = code.splitlines()[0][:60]
            result.skipped.append(f"line {node.lineno}: {first!r}: {e}")
    _collect(result, reader.env)
    return result
