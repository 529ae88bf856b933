"""The store: schema, the engine interface and one implementation per engine."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, MissingExtra
from .engine import Engine
from .schema import TABLES, Table

# engine name -> (module, class, the module whose absence means the extra is missing, extra)
_OPTIONAL_ENGINES = {
    "postgres": (".postgres_engine", "PostgresEngine", "psycopg", "postgres"),
    "spark": (".spark_engine", "SparkEngine", "pyspark", "spark"),
}


def _engine_class(name: str) -> Callable[..., Engine]:
    """Import an optional engine; a missing driver says which `pip install` line fixes it."""
    module, cls, driver, extra = _OPTIONAL_ENGINES[name]
    try:
        mod = importlib.import_module(module, __name__)
    except MissingExtra:
        raise
    except ImportError as exc:
        if (exc.name or driver).split(".")[0] in (driver, "py4j"):
            raise MissingExtra(driver, extra) from exc
        raise
    return getattr(mod, cls)


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
        if not cfg.dsn:
            raise ConfigError("set LEADREFINERY_PG_DSN to use the postgres engine", key="store.dsn")
        engine = _engine_class("postgres")(cfg.dsn)
    elif cfg.engine == "spark":  # once the settings allow it; tables in <project>/spark-warehouse
        engine = _engine_class("spark")(root / "spark-warehouse")
    else:  # pragma: no cover - the settings model forbids it
        raise ConfigError(f"unknown engine {cfg.engine!r}", key="store.engine")
    if not read_only:
        engine.ensure_schema()
    return engine


__all__ = ["Engine", "TABLES", "Table", "open_engine"]
