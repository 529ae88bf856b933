"""Logins for the dashboard and the REST API: users and roles from refinery.toml, hashed
passwords, signed expiring session cookies, CSRF tokens, HTTP Basic and API tokens for scripts.

    [users.ann]                              # written by `leadrefinery users add ann --role rep`
    role = "rep"                             # admin | analyst | rep
    rep = "ann@acme.com"                     # a rep sees the leads they own (see config.py)
    password_hash = "scrypt$16384$8$1$..."   # never the password

    auth = Auth(project_root)                # app.state.auth
    user = auth.user_for(request)            # session cookie, else Basic / Bearer; None if none

Passwords: scrypt (hashlib, N=2^14, r=8, p=1, 16-byte salt), compared in constant time.
Sessions: `base64(json{u, exp, n, c, h}).base64(HMAC-SHA256)` in an HttpOnly, SameSite=Lax
cookie (Secure with `[dashboard] secure_cookies`), expiring after `[dashboard] session_hours`;
logging out revokes it; changing a user's password ends their sessions (`h` is a fingerprint
of the hash). Forms carry the session's CSRF token `c`; the login form a double-submit token.
The signing key: LEADREFINERY_SESSION_SECRET, else secrets.toml `[dashboard] session_secret`,
else a random key created once in `.session_key` (mode 0600) in the project folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from ..config import PROJECT_FILE, UserConfig, load_secrets, load_settings
from ..errors import AuthError, ConfigError, InputError
from ..report.common import Scope

SESSION_COOKIE = "lr_session"
LOGIN_CSRF_COOKIE = "lr_login_csrf"
KEY_FILE = ".session_key"
ROLES = ("admin", "analyst", "rep")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")


class Forbidden(AuthError):
    """Logged in, but the role may not read this (HTTP 403)."""

    http_status = 403
    code = "forbidden"


# -- passwords and tokens ---------------------------------------------------------------------


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash: `scrypt$N$r$p$salt$key`."""
    if not password:
        raise InputError("the password is empty", field="password")
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not password:
        return False
    try:
        algo, n, r, p, salt, key = stored.split("$")
        if algo != "scrypt":
            return False
        want = _unb64(key)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=256 * 1024 * 1024)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


def new_token() -> tuple[str, str]:
    """An API token and the hash to store: (`lr_...`, `sha256$hex`)."""
    token = "lr_" + secrets.token_urlsafe(24)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


# -- users --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    role: str
    rep: str | None = None
    owners: tuple[str, ...] = ()
    see_all: bool = False
    display: str | None = None
    csrf: str = ""  # the session's CSRF token ("" for Basic / token auth: no forms)
    nonce: str = ""
    via: str = "session"

    @property
    def limited(self) -> bool:
        return self.role == "rep" and not self.see_all

    @property
    def scope(self) -> Scope:
        if not self.limited:
            return Scope.everyone()
        return Scope.of_rep([x for x in (self.rep, *self.owners) if x])

    def can(self, what: str) -> bool:
        """Pages and actions: leads, people, abuse, overview for everyone; campaigns, model,
        run_backtest for admin and analyst."""
        if what in ("leads", "people", "abuse", "overview", "alerts"):
            return True
        return self.role in ("admin", "analyst")

    @property
    def label(self) -> str:
        return self.display or self.name


def _user(name: str, cfg: UserConfig, **kw) -> User:
    return User(name=name, role=cfg.role, rep=cfg.rep, owners=tuple(cfg.owners),
                see_all=cfg.see_all, display=cfg.name, **kw)


def _fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:12]


# -- the session signer and the app's auth state -------------------------------------------------


def session_secret(root: Path) -> bytes:
    env = os.environ.get("LEADREFINERY_SESSION_SECRET")
    if env:
        return env.encode()
    sec = load_secrets(root).get("dashboard", {}).get("session_secret")
    if sec:
        return str(sec).encode()
    path = root / KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


@dataclass
class Auth:
    root: Path
    session_hours: float = 8.0
    secure_cookies: bool = False
    _users: dict[str, UserConfig] = field(default_factory=dict)
    _mtime: float = -1.0
    _revoked: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, deque] = field(default_factory=dict)
    _basic_ok: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.secret = session_secret(self.root)
        self.users()

    # users are re-read when refinery.toml changes, so `users add` needs no restart
    def users(self) -> dict[str, UserConfig]:
        path = self.root / PROJECT_FILE
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return self._users
        if mtime != self._mtime:
            with self._lock:
                try:
                    settings = load_settings(self.root)
                    self._users = dict(settings.users)
                    self.session_hours = settings.dashboard.session_hours
                    self.secure_cookies = settings.dashboard.secure_cookies
                except ConfigError:
                    pass  # keep the users we had; `leadrefinery status` shows the error
                self._mtime = mtime
        return self._users

    # -- sessions --------------------------------------------------------------------------

    def _sign(self, body: bytes) -> str:
        return _b64(hmac.new(self.secret, body, hashlib.sha256).digest())

    def make_session(self, name: str) -> tuple[str, int]:
        """A signed session cookie value for user `name` and its lifetime in seconds."""
        cfg = self.users()[name]
        ttl = int(self.session_hours * 3600)
        payload = {"u": name, "exp": int(time.time()) + ttl, "n": secrets.token_urlsafe(12),
                   "c": secrets.token_urlsafe(24), "h": _fingerprint(cfg.password_hash)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body.encode())}", ttl

    def read_session(self, value: str | None) -> User | None:
        if not value or "." not in value:
            return None
        body, sig = value.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(body.encode())):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            return None
        if payload.get("n") in self._revoked:
            return None
        cfg = self.users().get(payload.get("u", ""))
        if cfg is None or payload.get("h") != _fingerprint(cfg.password_hash):
            return None
        return _user(payload["u"], cfg, csrf=payload.get("c", ""), nonce=payload.get("n", ""))

    def revoke(self, user: User) -> None:
        now = time.time()
        with self._lock:
            self._revoked = {n: t for n, t in self._revoked.items() if t > now}
            if user.nonce:
                self._revoked[user.nonce] = now + self.session_hours * 3600

    # -- logging in ------------------------------------------------------------------------

    def throttled(self, key: str, *, limit: int = 10, window: float = 600) -> bool:
        q = self._failures.get(key)
        if not q:
            return False
        now = time.time()
        while q and q[0] < now - window:
            q.popleft()
        return len(q) >= limit

    def _failed(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(time.time())

    def login(self, name: str, password: str, client: str = "") -> User | None:
        """The user if `password` is right (None otherwise; too many failures: AuthError)."""
        key = f"{client}|{name.lower()}"
        if self.throttled(key):
            raise AuthError("too many failed logins; wait a few minutes and try again")
        cfg = self.users().get(name)
        if cfg is None:
            verify_password(password, _DUMMY_HASH)  # same time whether or not the user exists
            self._failed(key)
            return None
        if not verify_password(password, cfg.password_hash):
            self._failed(key)
            return None
        self._failures.pop(key, None)
        return _user(name, cfg, via="password")

    def user_for(self, request: Request) -> User | None:
        """The signed-in user: session cookie, else `Authorization: Basic` / `Bearer` token."""
        user = self.read_session(request.cookies.get(SESSION_COOKIE))
        if user is not None:
            return user
        header = request.headers.get("authorization", "")
        scheme, _, cred = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and cred:
            h = token_hash(cred.strip())
            for name, cfg in self.users().items():
                if any(hmac.compare_digest(h, t) for t in cfg.token_hashes):
                    return _user(name, cfg, via="token")
            return None
        if scheme == "basic" and cred:
            try:
                name, _, password = base64.b64decode(cred.strip()).decode().partition(":")
            except (ValueError, binascii.Error):
                return None
            found = self.users().get(name)
            if found is None:
                return None
            cfg = found
            # scrypt is slow on purpose: remember a good password briefly (by its hash)
            memo = hashlib.sha256(f"{name}\0{password}\0{cfg.password_hash}".encode()).hexdigest()
            if self._basic_ok.get(memo, 0) > time.time():
                return _user(name, cfg, via="basic")
            client = request.client.host if request.client else ""
            user = self.login(name, password, client)
            if user is not None:
                self._basic_ok[memo] = time.time() + 300
                return _user(name, cfg, via="basic")
        return None


_DUMMY_HASH = ("scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$"
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")


def require_api_user(request: Request) -> User:
    """FastAPI dependency for /api: the user, or 401 (JSON, with a Basic challenge)."""
    user = request.app.state.auth.user_for(request)
    if user is None:
        raise AuthError("log in first: a session cookie from /login, HTTP Basic "
                        "(user:password) or `Authorization: Bearer <token>`")
    return user


def check_csrf(user: User, token: str | None) -> bool:
    return bool(user.csrf) and bool(token) and hmac.compare_digest(user.csrf, token or "")


# -- writing users into refinery.toml -----------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string


def _header_re(name: str) -> re.Pattern:
    q = re.escape(name)
    return re.compile(rf'^\[\s*users\s*\.\s*(?:"{q}"|{q})\s*\]\s*$', re.M)


def set_user(root: Path, user: str, **values) -> None:
    """Create or update `[users.NAME]` in refinery.toml; other keys of the user are kept,
    keys given as None are removed. Comments elsewhere in the file are untouched."""
    if not NAME_RE.match(user):
        raise InputError(f"user name {user!r}: use letters, digits and . _ @ + - (at most 64)",
                         field="name")
    role = values.get("role")
    if role is not None and role not in ROLES:
        raise InputError(f"role {role!r}: use one of {', '.join(ROLES)}", field="role")
    path = Path(root) / PROJECT_FILE
    text = path.read_text(encoding="utf-8")
    users = load_settings(Path(root)).users
    current = users[user].model_dump(exclude_defaults=True) if user in users else {}
    merged = {**current, **{k: v for k, v in values.items() if v is not None}}
    for k, v in values.items():
        if v is None:
            merged.pop(k, None)
    UserConfig.model_validate(merged)  # fail before writing
    order = ["role", "name", "rep", "owners", "see_all", "password_hash", "token_hashes"]
    keys = [k for k in order if k in merged] + [k for k in merged if k not in order]
    block = f'[users."{user}"]\n' + "".join(f"{k} = {_toml_value(merged[k])}\n" for k in keys)
    m = _header_re(user).search(text)
    if m:
        nxt = re.compile(r"^\s*\[", re.M).search(text, m.end())
        end = nxt.start() if nxt else len(text)
        text = text[:m.start()] + block + ("\n" if nxt else "") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    _write_checked(path, text)


def _write_checked(path: Path, text: str) -> None:
    """Write refinery.toml only if the new text still parses and validates."""
    from ..config import Settings

    try:
        Settings.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"not changed: the edit would make it invalid ({exc}); edit the "
                          "[users] tables by hand", file=str(path)) from exc
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def remove_user(root: Path, name: str) -> bool:
    path = Path(root) / PROJECT_FILE
    text = path.read_text(encoding="utf-8")
    m = _header_re(name).search(text)
    if not m:
        return False
    nxt = re.compile(r"^\s*\[", re.M).search(text, m.end())
    text = text[:m.start()] + (text[nxt.start():] if nxt else "")
    _write_checked(path, text.rstrip("\n") + "\n")
    return True


DEMO_PASSWORD = "demo"


def ensure_demo_users(root: Path, engine=None) -> list[tuple[str, str, str]]:
    """The demo project's logins: admin, analyst and one rep (the owner of most accounts),
    all with password `demo`. Returns (user, password, role) rows to print."""
    rep = None
    if engine is not None:
        got = engine.query("SELECT owner FROM accounts WHERE owner IS NOT NULL GROUP BY owner "
                           "ORDER BY count(*) DESC, owner LIMIT 1")
        rep = got[0][0] if got else None
    made = [("admin", DEMO_PASSWORD, "admin"), ("analyst", DEMO_PASSWORD, "analyst")]
    set_user(root, "admin", role="admin", name="Demo admin",
             password_hash=hash_password(DEMO_PASSWORD))
    set_user(root, "analyst", role="analyst", name="Demo analyst",
             password_hash=hash_password(DEMO_PASSWORD))
    if rep:
        short = rep.split("@")[0].split(".")[0]
        set_user(root, short, role="rep", rep=rep, name=rep.split("@")[0].replace(".", " ").title(),
                 password_hash=hash_password(DEMO_PASSWORD))
        made.append((short, DEMO_PASSWORD, f"rep: {rep}"))
    return made
