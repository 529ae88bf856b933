"""The errors Lead Refinery raises, one root with a few meaningful branches.

    LeadRefineryError                 every error we raise on purpose
    ├── ConfigError                   refinery.toml / settings are wrong (file, key)
    ├── ProjectNotFound               no refinery.toml here or above
    ├── StoreBusy                     another process (usually `serve`) owns the store
    ├── StoreError                    the database refused something (wraps the driver error)
    ├── MissingExtra                  an optional dependency is not installed (says which pip line)
    ├── InputError                    bad user input (file, line, message id, field)
    │   └── MessageError              one Segment message is invalid (field, message id)
    ├── ModelError                    the scoring model file is invalid (file, line, rule id)
    ├── NotFound                      a person, model or alert that does not exist
    └── AuthError                     missing or unknown write key / credentials

Each class carries an HTTP status and a CLI exit code so `api` and `cli` map them in one place.
"""

from __future__ import annotations


class LeadRefineryError(Exception):
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class ConfigError(LeadRefineryError):
    http_status = 500
    exit_code = 3

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ":".join(x for x in (file, key) if x)
        super().__init__(f"{where}: {message}" if where else message, file=file, key=key)
        self.file, self.key = file, key


class ProjectNotFound(LeadRefineryError):
    exit_code = 3


class StoreBusy(LeadRefineryError):
    http_status = 503
    exit_code = 4


class StoreError(LeadRefineryError):
    exit_code = 5


class MissingExtra(LeadRefineryError):
    exit_code = 3

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"the optional dependency {module!r} is not installed; "
            f"run: pip install 'leadrefinery[{extra}]'"
        )


class InputError(LeadRefineryError):
    http_status = 400
    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        code: str = "invalid_input",
    ) -> None:
        where = f"{file}:{line}" if file and line else file
        super().__init__(f"{where}: {message}" if where else message, file=file, line=line)
        self.file, self.line, self.field, self.code = file, line, field, code


class MessageError(InputError):
    """One Segment message failed validation; `field` names the bad field."""

    def __init__(self, message: str, *, field: str | None = None, message_id: str | None = None):
        super().__init__(message, field=field, code="invalid_message")
        self.message_id = message_id


class ModelError(LeadRefineryError):
    http_status = 422
    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule: str | None = None,
    ) -> None:
        parts = [p for p in (file, str(line) if line else None) if p]
        where = ":".join(parts)
        if rule:
            where = f"{where} (rule {rule!r})" if where else f"rule {rule!r}"
        super().__init__(f"{where}: {message}" if where else message, file=file, line=line, rule=rule)
        self.file, self.line, self.rule = file, line, rule


class NotFound(LeadRefineryError):
    http_status = 404
    exit_code = 6


class AuthError(LeadRefineryError):
    http_status = 401
    exit_code = 7
