"""Reading a model file: YAML with line numbers -> pydantic spec -> checked `Model`.

Every problem becomes one `ModelError` saying `file:line (rule 'id'): what is wrong — what to
do`. Shape problems come from pydantic (translated here: unknown keys get a close-match
suggestion); meaning problems (an unknown field in a condition, an unknown set, a grade that
names a category nobody declares) come from compiling the model once at load.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import ModelError
from . import spec as S
from .yamlload import Lines, load_yaml

Loc = tuple[str | int, ...]


@dataclass
class Model:
    """A validated scoring model and where it came from."""

    spec: S.ModelSpec
    file: str
    lines: Lines = field(default_factory=Lines)
    data: Any = None
    text: str = ""

    @property
    def name(self) -> str:
        return self.spec.name or Path(self.file).stem

    @functools.cached_property
    def hash(self) -> str:
        """Content hash of the validated model (formatting and comments do not change it).
        Computed once: the live lanes read it on every rescore (about 1 ms each)."""
        canon = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    @property
    def version(self) -> str:
        """`<version>+<hash prefix>`: the declared version and exactly which content it was."""
        return f"{self.spec.version}+{self.hash[:10]}"

    def error(self, loc: Loc, message: str) -> ModelError:
        """A ModelError pointing at `loc` (a path in the model data)."""
        return ModelError(
            message, file=self.file, line=self.lines.line(loc), rule=rule_of(self.data, loc)
        )


def rule_of(data: Any, loc: Loc) -> str | None:
    """The id of the rule (or the name of the fact, segment, stage...) `loc` lies in."""
    if not loc or not isinstance(data, dict):
        return None
    head = loc[0]
    if head in ("rules", "abuse") and len(loc) > 1 and isinstance(loc[1], int):
        items = data.get(head)
        if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
            rid = items[loc[1]].get("id")
            return str(rid) if rid is not None else f"{head}[{loc[1]}]"
    if head in ("facts", "segments", "sets", "categories") and len(loc) > 1:
        return f"{head[:-1] if head != 'categories' else 'category'}:{loc[1]}"
    if head == "stages" and len(loc) > 2 and loc[1] == "evidence":
        return f"stage:{loc[2]}"
    if head in ("grades", "stages", "score", "accounts"):
        return head
    return None


# -- pydantic errors -> ModelError ----------------------------------------------------------


def _unwrap(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [x for a in get_args(tp) for x in _unwrap(a)]
    return [tp]


def _classes_at(path: Loc, data: Any) -> list[type[BaseModel]]:
    """The schema classes that could describe the value at `path` of the data."""
    current: list[Any] = [S.ModelSpec]
    for elem in path:
        nxt: list[Any] = []
        for t in current:
            if isinstance(t, type) and issubclass(t, BaseModel):
                f = t.model_fields.get(str(elem))
                if f is not None:
                    nxt += _unwrap(f.annotation)
            elif get_origin(t) in (list, tuple):
                args = get_args(t)
                if args:
                    nxt += _unwrap(args[0])
            elif get_origin(t) is dict:
                nxt += _unwrap(get_args(t)[1])
        current = nxt
    classes = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
    kind = _get(data, path).get("kind") if isinstance(_get(data, path), dict) else None
    if kind is not None and len(classes) > 1:
        exact = [
            c
            for c in classes
            if "kind" in c.model_fields and kind in get_args(c.model_fields["kind"].annotation)
        ]
        classes = exact or classes
    return classes


def _get(data: Any, path: Loc) -> Any:
    for p in path:
        if (
            isinstance(data, dict)
            and p in data
            or isinstance(data, list)
            and isinstance(p, int)
            and p < len(data)
        ):
            data = data[p]
        else:
            return None
    return data


def data_path(data: Any, loc: Loc) -> Loc:
    """A pydantic error location mapped onto the data (union tags such as `Limit` dropped)."""
    out: list[str | int] = []
    cur = data
    for i, p in enumerate(loc):
        last = i == len(loc) - 1
        if (
            isinstance(cur, dict)
            and p in cur
            or isinstance(cur, list)
            and isinstance(p, int)
            and p < len(cur)
        ):
            out.append(p)
            cur = cur[p]
        elif last and isinstance(cur, dict) and isinstance(p, str):
            out.append(p)  # a missing key: its line is its parent block's
            cur = None
        # anything else is a union tag (`session`, `Limit`, ...), not in the data
    return tuple(out)


def _what(path: Loc) -> str:
    return ".".join(str(p) for p in path if not isinstance(p, int)) or "the model"


def _message(err: dict, data: Any, path: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = sorted({f for c in _classes_at(path[:-1], data) for f in c.model_fields})
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        return f"unknown key {key!r} — {hint}"
    if kind == "missing":
        return f"missing required key {str(path[-1])!r} — add it"
    if kind in ("literal_error", "union_tag_invalid"):
        ctx = err.get("ctx", {})
        expected = ctx.get("expected") or ctx.get("expected_tags", "")
        got = ctx["tag"] if kind == "union_tag_invalid" else err.get("input")
        if kind == "union_tag_invalid":
            path = (*path, "kind")
        options = [
            o.strip(" '") for o in str(expected).replace(" or ", ",").split(",") if o.strip()
        ]
        close = difflib.get_close_matches(str(got), options, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {expected}"
        return f"{_what(path)}: {got!r} is not allowed — {hint}"
    if kind == "union_tag_not_found":
        return f"{_what(path)}: needs `kind:` (event, session, concurrent or regular)"
    if kind == "string_pattern_mismatch":
        return (
            f"{_what(path)}: {err.get('input')!r} is not a valid name — use lower-case letters, "
            "digits and _, starting with a letter (like pricing_page)"
        )
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{_what(path)}: {msg}{shown}"


FREQ_HINT = "frequency is once, each, {max_per_day: N} or {max_total: N}"


def translate(exc: ValidationError, data: Any, lines: Lines, file: str) -> ModelError:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    # a union's first alternative failing says little; name the field's accepted forms
    if "frequency" in loc:
        path = data_path(data, loc[: loc.index("frequency") + 1])
        msg = f"{FREQ_HINT} (got {_get(data, path)!r})"
        if any(e["type"] == "extra_forbidden" for e in errors):
            bad = next(e for e in errors if e["type"] == "extra_forbidden")
            msg = _message(bad, data, data_path(data, tuple(bad["loc"])))
    else:
        path = data_path(data, loc)
        msg = _message(first, data, path)
    more = len({tuple(e["loc"][:2]) for e in errors}) - 1
    if more > 0:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ModelError(msg, file=file, line=lines.line(path), rule=rule_of(data, path))


# -- entry points ---------------------------------------------------------------------------


def parse_model(text: str, file: str = "<model>", *, check: bool = True) -> Model:
    data, lines = load_yaml(text, file)
    if not isinstance(data, dict):
        raise ModelError(
            "a model file is a YAML mapping (version:, rules:, grades: ...)", file=file, line=1
        )
    if "version" not in data:
        raise ModelError(
            "missing required key 'version' — add `version: 1` at the top", file=file, line=1
        )
    try:
        spec = S.ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, data, lines, file) from None
    model = Model(spec=spec, file=file, lines=lines, data=data, text=text)
    if check:
        from .compile import check_model

        check_model(model)
    return model


def load_model(path: str | Path, *, check: bool = True) -> Model:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            f"no model file {p} — create it, or start from the demo model "
            "(leadrefinery/sample/model.yaml)"
        ) from None
    except UnicodeDecodeError:
        raise ModelError("the model file is not UTF-8 text", file=str(p)) from None
    return parse_model(text, str(p), check=check)
