"""Project settings: `refinery.toml`, validated at load.

Precedence: explicit argument > environment variable (`LEADREFINERY_*`) > project file > default.
Secrets (SMTP password, webhook secrets, PostgreSQL DSN) come from the environment or from a
separate `secrets.toml` beside the project file, never from `refinery.toml` itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

PROJECT_FILE = "refinery.toml"
SECRETS_FILE = "secrets.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(Section):
    name: str = "lead-refinery"


class StoreSection(Section):
    engine: Literal["duckdb", "postgres"] = "duckdb"
    path: str = "store.duckdb"
    # PostgreSQL DSN: prefer LEADREFINERY_PG_DSN (a secret); allowed here for local set-ups.
    dsn: str | None = None
    memory_limit: str = "2GB"
    threads: int = 2


class ServerSection(Section):
    host: str = "127.0.0.1"
    port: int = 8321
    # write key -> source name; events arriving with that key are tagged with the source.
    write_keys: dict[str, str] = Field(default_factory=lambda: {"demo-write-key": "web"})
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    # how often the ingestion log is loaded into the store (micro-batches)
    load_interval_ms: int = 200
    public_url: str | None = None


class CsvMapping(Section):
    """How the columns of a CSV map to our fields: `field = "Column header"`.

    Unmapped columns are kept as traits under their header name.
    """

    kind: Literal["people", "accounts", "conversions", "opportunities", "campaigns"] = "people"
    columns: dict[str, str] = Field(default_factory=dict)
    delimiter: str = ","
    time_format: str | None = None


class KeyValueMapping(Section):
    """How `key=value` log lines become Segment messages.

    Each line becomes an `identify` (all keys as traits) and, when `event` is set, also a `track`
    with the keys as properties.
    """

    user_id: str = "Email"
    email: str | None = "Email"
    timestamp: str | None = None
    event: str | None = None
    traits: list[str] | None = None  # None = every key
    rename: dict[str, str] = Field(default_factory=dict)


class IngestSection(Section):
    webmail_domains_extra: list[str] = Field(default_factory=list)
    # a `track` event with one of these names records a conversion outcome
    conversion_events: list[str] = Field(default_factory=list)
    csv: dict[str, CsvMapping] = Field(default_factory=dict)
    kv: dict[str, KeyValueMapping] = Field(default_factory=dict)
    chunk_bytes: int = 64 * 1024 * 1024


class ModelSection(Section):
    files: list[str] = Field(default_factory=lambda: ["model.yaml"])
    published: str = "model.yaml"


class Settings(Section):
    project: ProjectSection = Field(default_factory=ProjectSection)
    store: StoreSection = Field(default_factory=StoreSection)
    server: ServerSection = Field(default_factory=ServerSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    model: ModelSection = Field(default_factory=ModelSection)


# environment variable -> dotted settings key
ENVIRONMENT = {
    "LEADREFINERY_STORE_ENGINE": "store.engine",
    "LEADREFINERY_STORE_PATH": "store.path",
    "LEADREFINERY_PG_DSN": "store.dsn",
    "LEADREFINERY_HOST": "server.host",
    "LEADREFINERY_PORT": "server.port",
}


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc


def load_settings(root: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Read `root/refinery.toml`, apply environment variables, then explicit overrides."""
    path = root / PROJECT_FILE
    data = _read_toml(path) if path.exists() else {}
    for var, key in ENVIRONMENT.items():
        if var in os.environ:
            _set(data, key, os.environ[var])
    for key, value in (overrides or {}).items():
        _set(data, key, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{first['msg']} ({len(exc.errors())} problem(s) in all)", file=str(path), key=key
        ) from exc


def load_secrets(root: Path) -> dict[str, Any]:
    path = root / SECRETS_FILE
    return _read_toml(path) if path.exists() else {}


DEFAULT_PROJECT_FILE = """\
# Lead Refinery project settings. Secrets (SMTP password, webhook secrets, PostgreSQL DSN)
# belong in the environment or in secrets.toml, not here.

[project]
name = "{name}"

[store]
engine = "duckdb"          # duckdb (embedded, default) | postgres (set LEADREFINERY_PG_DSN)
path = "store.duckdb"

[server]
host = "127.0.0.1"
port = 8321
# write key -> source name. Segment clients send the key as HTTP Basic user name.
write_keys = {{ "{write_key}" = "web" }}

[ingest]
# `track` events with these names are recorded as conversions
conversion_events = ["Subscription Started"]

# A CSV column mapping, used with `leadrefinery ingest FILE.csv --mapping crm_people`
# [ingest.csv.crm_people]
# kind = "people"
# columns = {{ email = "Email", company = "Company", title = "Job Title" }}

# A key=value log mapping, used with `leadrefinery ingest FILE.log --mapping weblog`
# [ingest.kv.weblog]
# user_id = "Email"
# timestamp = "LastLoginTime"

[model]
files = ["model.yaml"]
published = "model.yaml"
"""
