"""A YAML loader that remembers where every value came from.

`load_yaml(text, file)` returns `(data, lines)`: plain Python data (dicts, lists, scalars) and a
`Lines` map from a path inside the data (`("rules", 3, "points")`) to the 1-based line of that
value in the file, so a validation error can say `model.yaml:42`. Duplicate keys, which plain
PyYAML silently lets the last one win, are an error here.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..errors import ModelError

Path = tuple[str | int, ...]


class Lines:
    """Path inside the loaded data -> line number (1-based)."""

    def __init__(self) -> None:
        self.value: dict[Path, int] = {}
        self.key: dict[Path, int] = {}

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.key:
                return self.key[p]
            if p in self.value:
                return self.value[p]
            if not p:
                return None
            p = p[:-1]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so `on: track` keeps its key `on`
    (YAML 1.1 reads on/off/yes/no as booleans)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _build(loader: _Loader, node: yaml.Node, path: Path, lines: Lines, file: str) -> Any:
    lines.value[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise ModelError(
                    "a key must be a plain word — write it as `name: value`",
                    file=file,
                    line=knode.start_mark.line + 1,
                )
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise ModelError(
                    f"key {key!r} appears twice in the same block (the first is on line "
                    f"{lines.key[(*path, key)]}) — keep one of them",
                    file=file,
                    line=knode.start_mark.line + 1,
                )
            lines.key[(*path, key)] = knode.start_mark.line + 1
            out[key] = _build(loader, vnode, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, file: str = "<model>") -> tuple[Any, Lines]:
    lines = Lines()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lines
        return _build(loader, node, (), lines, file), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ModelError(
            f"not valid YAML: {problem} — check the indentation and quoting around here",
            file=file,
            line=mark.line + 1 if mark else None,
        ) from exc
    finally:
        loader.dispose()
