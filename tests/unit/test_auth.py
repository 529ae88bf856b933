"""Logins: password hashes, signed expiring sessions, CSRF, roles and a rep's scope, HTTP Basic
and API tokens on the REST API, and `leadrefinery users`."""

from __future__ import annotations

import base64
import time
import warnings

import pytest
from typer.testing import CliRunner

from leadrefinery import Project
from leadrefinery.api.app import create_app
from leadrefinery.api.auth import (
    SESSION_COOKIE,
    Auth,
    hash_password,
    new_token,
    remove_user,
    set_user,
    token_hash,
    verify_password,
)
from leadrefinery.cli import app as cli
from leadrefinery.config import load_settings
from leadrefinery.errors import ConfigError, InputError

from .test_report import demo_copy

with warnings.catch_warnings():  # starlette asks for `httpx2`; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_password_hash_roundtrip():
    h = hash_password("s3cret pass")
    assert h.startswith("scrypt$16384$8$1$") and "s3cret" not in h
    assert verify_password("s3cret pass", h)
    assert not verify_password("s3cret pasS", h)
    assert not verify_password("", h) and not verify_password("x", None)
    assert not verify_password("x", "garbage") and not verify_password("x", "md5$a$b$c$d$e")
    assert hash_password("same") != hash_password("same")  # salted
    with pytest.raises(InputError):
        hash_password("")


def test_tokens():
    token, digest = new_token()
    assert token.startswith("lr_") and digest == token_hash(token) and token not in digest


@pytest.fixture
def bare(project):
    """A fresh project (no data) with one user of each role."""
    root = project.root
    set_user(root, "ann", role="admin", password_hash=hash_password("pw-ann"))
    set_user(root, "bob", role="rep", rep="bob@acme.test", owners=["Bob B"],
             password_hash=hash_password("pw-bob"))
    return root


def test_set_user_edits_the_project_file(bare):
    text = (bare / "refinery.toml").read_text()
    assert '[users."ann"]' in text and "pw-ann" not in text
    assert "[project]" in text and "# Lead Refinery project settings" in text  # rest kept
    s = load_settings(bare)
    assert s.users["bob"].role == "rep" and s.users["bob"].owners == ["Bob B"]
    set_user(bare, "bob", role="analyst")  # other keys kept
    s = load_settings(bare)
    assert s.users["bob"].role == "analyst" and s.users["bob"].rep == "bob@acme.test"
    assert verify_password("pw-bob", s.users["bob"].password_hash)
    with pytest.raises(InputError):
        set_user(bare, "eve", role="root")
    with pytest.raises(InputError):
        set_user(bare, "bad name!", role="rep")
    assert remove_user(bare, "bob") and "bob" not in load_settings(bare).users
    assert not remove_user(bare, "bob")


def test_set_user_refuses_to_break_the_file(bare):
    path = bare / "refinery.toml"
    path.write_text(path.read_text() + "\n[users]\nzed = { role = \"rep\" }\n")
    before = path.read_text()
    with pytest.raises(ConfigError):
        set_user(bare, "zed", role="admin")  # would define users.zed twice
    assert path.read_text() == before


def test_sessions_sign_expire_and_revoke(bare):
    auth = Auth(bare)
    value, ttl = auth.make_session("ann")
    assert ttl == 8 * 3600
    user = auth.read_session(value)
    assert user.name == "ann" and user.role == "admin" and user.csrf
    body, sig = value.rsplit(".", 1)
    assert auth.read_session(body + "." + sig[:-2] + "AA") is None  # tampered
    assert auth.read_session(body[:-3] + "xyz." + sig) is None
    other = Auth(bare)
    other.secret = b"another key"
    assert other.read_session(value) is None
    auth.revoke(user)
    assert auth.read_session(value) is None
    auth.session_hours = -1 / 3600  # already expired when made
    expired, _ = auth.make_session("ann")
    auth.session_hours = 8
    assert auth.read_session(expired) is None
    # a new password ends the old sessions
    value, _ = auth.make_session("bob")
    assert auth.read_session(value) is not None
    time.sleep(0.01)
    set_user(bare, "bob", password_hash=hash_password("new"))
    assert auth.read_session(value) is None
    assert (bare / ".session_key").stat().st_mode & 0o077 == 0


def test_login_throttles_guessing(bare):
    auth = Auth(bare)
    for _ in range(10):
        assert auth.login("ann", "wrong", "1.2.3.4") is None
    from leadrefinery.errors import AuthError

    with pytest.raises(AuthError):
        auth.login("ann", "pw-ann", "1.2.3.4")
    assert auth.login("ann", "pw-ann", "5.6.7.8") is not None
    assert auth.login("nobody", "x") is None


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path):
    p = Project(demo_copy(tmp_path))
    with TestClient(create_app(p)) as c:
        c.project = p
        yield c
    p.close()


def form_login(c: TestClient, user: str, password: str, next_: str = "/"):
    r = c.get("/login")
    csrf = r.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return c.post("/login", data={"username": user, "password": password, "csrf": csrf,
                                  "next": next_}, follow_redirects=False)


def test_pages_need_a_login(client):
    r = client.get("/leads?grade=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert client.get("/api/leads").status_code == 401
    assert client.get("/api/leads").headers["www-authenticate"].startswith("Basic")
    assert client.get("/people/x", follow_redirects=False).status_code == 303
    # ingestion keeps its write keys: no login needed, a bad key is refused
    assert client.get("/health").status_code == 200


def test_form_login_cookie_and_logout(client):
    r = form_login(client, "admin", "wrong")
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert SESSION_COOKIE not in client.cookies
    r = form_login(client, "admin", "demo", "/campaigns")
    assert r.status_code == 303 and r.headers["location"] == "/campaigns"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=28800" in cookie
    page = client.get("/leads")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    assert "app;dur=" in page.headers["server-timing"]
    assert client.get("/api/me").json()["role"] == "admin"
    # logging out needs the session's CSRF token
    assert client.post("/logout", data={"csrf": "nope"}).status_code == 403
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/api/me").status_code == 401


def test_login_form_needs_its_csrf_token(client):
    client.get("/login")
    r = client.post("/login", data={"username": "admin", "password": "demo", "csrf": "forged"},
                    follow_redirects=False)
    assert r.status_code == 401 and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    # an open redirect is not possible through `next`
    r = form_login(client, "admin", "demo", "//evil.example/")
    assert r.headers["location"] == "/"


# DuckDB warns about an extra copy in store/duckdb_engine.query_arrow (used by explain)
@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")
def test_rep_sees_only_own_leads(client):
    p = client.project
    rep = next(n for n, u in p.settings.users.items() if u.role == "rep")
    email = p.settings.users[rep].rep
    assert form_login(client, rep, "demo").status_code == 303
    leads = client.get("/api/leads?per_page=1000").json()
    assert leads["total"] > 0 and {r["owner"] for r in leads["rows"]} == {email}
    other = p.engine.scalar("SELECT p.person_id FROM people p JOIN accounts a USING (account_id) "
                            "WHERE a.owner <> ? LIMIT 1", [email])
    mine = leads["rows"][0]["person_id"]
    assert client.get(f"/api/people/{mine}").status_code == 200
    assert client.get(f"/api/people/{mine}/explanation").status_code == 200
    for path in (f"/api/people/{other}", f"/api/people/{other}/scores",
                 f"/api/people/{other}/timeline", f"/api/people/{other}/explanation"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/people/{other}").status_code == 404
    assert client.get("/campaigns").status_code == 403
    assert client.get("/api/campaigns").status_code == 403
    assert client.get("/model").status_code == 403
    csv_text = client.get("/leads.csv").text
    assert csv_text.count("\n") == leads["total"] + 1 and other not in csv_text


def test_basic_auth_and_api_token(client):
    root = client.project.root
    basic = base64.b64encode(b"analyst:demo").decode()
    r = client.get("/api/leads?per_page=3", headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200 and len(r.json()["rows"]) == 3
    bad = base64.b64encode(b"analyst:nope").decode()
    assert client.get("/api/me", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    token, digest = new_token()
    set_user(root, "script", role="analyst", token_hashes=[digest])
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["name"] == "script" and me["via"] == "token"
    assert client.get("/api/me", headers={"Authorization": "Bearer lr_wrong"}).status_code == 401
    # Basic / token credentials open the API, not the HTML pages (those need the form login)
    r = client.get("/leads", headers={"Authorization": f"Basic {basic}"}, follow_redirects=False)
    assert r.status_code == 403


def test_openapi_describes_the_rest_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/leads", "/api/people/{person}", "/api/people/{person}/scores",
              "/api/people/{person}/explanation", "/api/alerts", "/api/campaigns",
              "/api/export"):
        assert p in paths, p
    assert "/leads" not in paths  # pages are not API


def test_cli_users(project):
    runner = CliRunner()
    root = str(project.root)
    r = runner.invoke(cli, ["users", "add", "carol", "--role", "rep", "--rep", "carol@x.test",
                            "--password", "pw", "--project", root])
    assert r.exit_code == 0, r.output
    s = load_settings(project.root)
    assert s.users["carol"].rep == "carol@x.test"
    assert verify_password("pw", s.users["carol"].password_hash)
    r = runner.invoke(cli, ["users", "add", "dave", "--project", root],
                      input="secret\nsecret\n")
    assert r.exit_code == 0, r.output
    assert verify_password("secret", load_settings(project.root).users["dave"].password_hash)
    r = runner.invoke(cli, ["users", "token", "carol", "--project", root])
    assert r.exit_code == 0
    token = r.output.strip().splitlines()[-1]
    assert token_hash(token) in load_settings(project.root).users["carol"].token_hashes
    r = runner.invoke(cli, ["users", "list", "--project", root])
    assert "carol" in r.output and "leads of carol@x.test" in r.output
    r = runner.invoke(cli, ["users", "add", "x", "--role", "boss", "--password", "p",
                            "--project", root])
    assert r.exit_code == 2 and "role" in r.output
    r = runner.invoke(cli, ["users", "remove", "dave", "--project", root])
    assert r.exit_code == 0 and "dave" not in load_settings(project.root).users
