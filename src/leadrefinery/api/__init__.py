"""HTTP: Segment-compatible ingestion (`/v1/*`); REST and dashboard routers join the same app.

    app.py            create_app(project): the FastAPI app and its one error -> JSON mapping
    ingest.py         the Segment tracking API router (/v1/identify ... /v1/batch, /health)
    service.py        IngestService: the log + its loader + on_loaded hooks, held by the app
    wal.py            the append-only, fsync'd, group-committed ingestion log
    loader_thread.py  loads the log's tail into the store in micro-batches, exactly once
    server.py         `leadrefinery serve`: uvicorn, serve.json
"""

from .app import create_app

__all__ = ["create_app"]
