"""The store: schema, the engine interface and one implementation per engine."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, MissingExtra
from .engine import Engine
from .schema import TABLES, Table


def open_engine(settings: Settings, root: Path, *, read_only: bool = False, owner_hint: str = "") -> Engine:
    """Open the store a project's settings describe, creating/migrating its schema."""
    cfg = settings.store
    if cfg.engine == "duckdb":
        from .duckdb_engine import DuckDBEngine

        engine: Engine = DuckDBEngine(
            root / cfg.path,
            read_only=read_only,
            memory_limit=cfg.memory_limit,
            threads=cfg.threads,
            owner_hint=owner_hint,
        )
    elif cfg.engine == "postgres":
        try:
            from .postgres_engine import PostgresEngine
        except ImportError as exc:  # psycopg missing
            raise MissingExtra("psycopg", "postgres") from exc
        if not cfg.dsn:
            raise ConfigError("set LEADREFINERY_PG_DSN to use the postgres engine", key="store.dsn")
        engine = PostgresEngine(cfg.dsn)
    else:  # pragma: no cover - the settings model forbids it
        raise ConfigError(f"unknown engine {cfg.engine!r}", key="store.engine")
    if not read_only:
        engine.ensure_schema()
    return engine


__all__ = ["Engine", "TABLES", "Table", "open_engine"]
