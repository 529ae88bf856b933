"""Messages as the server receives them: the input of the hot and warm lanes.

The HTTP handler shows every message it logs to a `Picker` (a few dict lookups each). The
messages that may fire an action trigger or raise an abuse rule on their own (`ActionWatch`)
become `Received` items, carrying what
requests the loader has not stored yet said about their sender (`Recent`: identify traits, an
anonymous id linked to a user id), and `Realtime` evaluates them once the request is durable —
before the loader has stored them (see act/realtime.py, "The hot lane"). So do the messages of
senders a few points below an alert's line (`near`: "The warm lane"), with the message itself,
to be scored as the loader will store it. What the store knows about the person is read there;
this module only reads messages.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..ingest.identity import PROFILE_FIELDS
from ..ingest.segment import parse_time


@dataclass(frozen=True)
class Received:
    message_id: str
    ts: datetime  # naive UTC, as `events.ts`
    type: str
    event: str | None  # a track's event, a page's or screen's name (as `events.event`)
    path: str | None
    user_id: str | None
    anonymous_id: str | None
    linked_user: str | None  # the user id a request not yet stored links `anonymous_id` to
    traits: dict[str, Any] = field(default_factory=dict)  # identify traits not yet stored
    properties: dict[str, Any] | None = None  # (what an abuse rule reads)
    action: bool = True  # may fire an action trigger
    abuse: bool = False  # an abuse rule one event raises may hold
    raw: bytes | None = None  # the message, when its sender is near a line (the warm lane's)
    at: float = field(default_factory=time.monotonic)  # received (for the lag)


def event_time(m: dict[str, Any]) -> datetime:
    """`events.ts` of a message: its timestamp, else originalTimestamp, else receivedAt (as
    ingest/normalize.py), as naive UTC."""
    for key in ("timestamp", "originalTimestamp", "receivedAt"):
        t = parse_time(m.get(key))
        if t is not None:
            return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t
    return datetime.now(UTC).replace(tzinfo=None)


def page_path(m: dict[str, Any]) -> str | None:
    """properties.path, else context.page.path (as the action query reads the store)."""
    for outer, inner in (("properties", None), ("context", "page")):
        d = m.get(outer)
        if inner is not None and isinstance(d, dict):
            d = d.get(inner)
        if isinstance(d, dict) and d.get("path") is not None:
            return str(d["path"])
    return None


def trait_key(key: str) -> str:
    """A trait's key as ingest/identity.py's NKEY normalises it: `Job Title` -> job_title."""
    return re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)).lower()


def profile_of(traits: dict[str, Any]) -> dict[str, str]:
    """The `people` columns identify traits set, as ingest/identity.py pivots them: per
    PROFILE_FIELDS the first listed key with a value wins (of two spellings of one key, the
    larger); an object gives its name or country; the email in lower case; the name, if none,
    from the first and last names."""
    text: dict[str, str] = {}
    for k, v in traits.items():
        if isinstance(v, dict):
            v = v.get("name") or v.get("country")
        if v is None or isinstance(v, list | dict):
            continue
        v = "true" if v is True else "false" if v is False else str(v)
        nk = trait_key(k)
        text[nk] = max(text.get(nk, v), v)
    out = {}
    for col, keys in PROFILE_FIELDS.items():
        v = next((text[k].strip() for k in keys if k in text), None)
        if v:
            out[col] = v
    if "email" in out:
        out["email"] = out["email"].lower()
    if "name" not in out and (out.get("first_name") or out.get("last_name")):
        out["name"] = " ".join(x for x in (out.get("first_name"), out.get("last_name")) if x)
    return out


class ActionWatch:
    """Which messages can fire one of `triggers` (action triggers): a track or page/screen
    named in their `events`, or a page whose path matches their `pages`; and the tracks named
    in `abuse` (those an abuse rule one event raises reads: act/live_abuse.py)."""

    def __init__(self, triggers: Sequence[Any], abuse: frozenset[str] = frozenset()) -> None:
        self.abuse_tracks = abuse
        self.events = frozenset(n for t in triggers for n in t.events)
        pages = sorted({p for t in triggers for p in t.pages})
        # one regex for all globs, as `glob_match` reads them: this runs for every page view
        self.pages = re.compile("|".join(fnmatch.translate(p) for p in pages)) if pages else None

    def abuse(self, m: dict[str, Any]) -> bool:
        return m.get("type") == "track" and m.get("event") in self.abuse_tracks

    def action(self, m: dict[str, Any]) -> bool:
        kind = m.get("type")
        if kind == "track":
            return m.get("event") in self.events
        if kind in ("page", "screen"):
            if m.get("name") in self.events:
                return True
            path = page_path(m) if kind == "page" and self.pages is not None else None
            return path is not None and self.pages.match(path) is not None
        return False


class Recent:
    """What requests said about people that the loader may not have stored yet: identify
    traits and anonymous ids linked to a user id, by the id they were sent under, so the hot
    lane sees a profile change (a new owner, say) received before the action, as the loader
    would. Entries go once the loader is past them (`forget_before` marks how far).

    No lock: it is used on the event loop (and by a request read off it, rarely); a lock a
    background thread might hold while descheduled would stall requests. Each dict operation
    is atomic; two requests racing on one person could at worst lose a trait merge."""

    KEEP = timedelta(seconds=5)  # requests received together reach the log in any order

    def __init__(self) -> None:
        self.links: dict[str, tuple[str, datetime]] = {}  # anonymous id -> user id, received
        self.traits: dict[str, tuple[dict[str, Any], datetime]] = {}  # id -> traits, received
        self._cut: datetime | None = None

    def note(self, m: dict[str, Any]) -> None:
        uid, aid = m.get("userId") or None, m.get("anonymousId") or None
        at = parse_time(m.get("receivedAt")) or datetime.now(UTC)
        traits = m.get("traits") if m.get("type") == "identify" else None
        if uid and aid and str(aid) not in self.links:  # the first link wins
            self.links[str(aid)] = (str(uid), at)
        if isinstance(traits, dict) and traits:
            for who in (uid, aid):
                if who:  # (re-inserted: the dicts stay in the order of receipt)
                    old = self.traits.pop(str(who), ({}, at))[0]
                    self.traits[str(who)] = ({**old, **traits}, at)
        if self._cut is not None:
            self._prune(self._cut)

    def linked(self, anonymous_id: str) -> str | None:
        hit = self.links.get(anonymous_id)
        return hit[0] if hit else None

    def traits_of(self, *ids: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in ids:
            hit = self.traits.get(i) if i else None
            if hit:
                out.update(hit[0])
        return out

    def forget_before(self, through: datetime) -> None:
        """The loader stored what was received before `through`: forget it (less `KEEP`), on
        the next `note`."""
        self._cut = (through.replace(tzinfo=UTC) if through.tzinfo is None else through
                     ) - self.KEEP

    def _prune(self, cut: datetime) -> None:
        for d in (self.links, self.traits):
            while d:  # oldest first: stop at the first one to keep
                k = next(iter(d))
                hit = d.get(k)
                if hit is not None and hit[1] >= cut:
                    break
                d.pop(k, None)


class Picker:
    """Shown one request's messages: notes profile changes in `recent`, keeps the messages
    `watch` wants and those of the senders in `near`; `items()` then gives them with their
    sender's ids and traits."""

    def __init__(self, watch: ActionWatch, recent: Recent,
                 near: Collection[str] = frozenset()) -> None:
        self.watch = watch
        self.recent = recent
        self.near = near
        # message, may fire an action, may raise an abuse rule, its sender is near a line
        self.hits: list[tuple[dict[str, Any], bool, bool, bool]] = []

    def __call__(self, m: dict[str, Any]) -> None:  # on the event loop, for every message
        kind = m.get("type")
        if kind == "identify" or (m.get("anonymousId") and m.get("userId")):
            self.recent.note(m)
        action = abuse = False
        if kind != "identify":
            action = self.watch.action(m)
            abuse = not action and self.watch.abuse(m)
        near = bool(self.near) and (m.get("userId") in self.near
                                    or m.get("anonymousId") in self.near)
        if action or abuse or near:
            self.hits.append((m, action, abuse, near))

    def items(self) -> list[Received]:
        out = []
        for m, action, abuse, near in self.hits:
            uid = str(m["userId"]) if m.get("userId") else None
            aid = str(m["anonymousId"]) if m.get("anonymousId") else None
            linked = self.recent.linked(aid) if aid and not uid else None
            out.append(Received(
                message_id=str(m["messageId"]), ts=event_time(m), type=m["type"],
                event=m.get("event") if m["type"] == "track" else m.get("name"),
                path=page_path(m), user_id=uid, anonymous_id=aid, linked_user=linked,
                traits=self.recent.traits_of(aid, uid or linked),
                properties=m.get("properties") if isinstance(m.get("properties"), dict)
                else None, action=action, abuse=abuse, raw=orjson.dumps(m) if near else None))
        return out
