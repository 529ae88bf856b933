"""Errors raised by the predictive side; all are `LeadRefineryError`s.

LeadRefineryError
└── PredictError              anything the predictive model refuses to do
    ├── NotFittedError        an estimator was used before `fit` (also a ValueError and an
    │                         AttributeError, like scikit-learn's, so sklearn code copes)
    ├── TrainingDataError     the training data cannot support a model (one class, too few rows)
    └── ModelFileError        a saved model directory is missing, damaged or from a newer format
"""

from __future__ import annotations

from ..errors import LeadRefineryError


class PredictError(LeadRefineryError):
    exit_code = 2
    http_status = 422


class NotFittedError(PredictError, ValueError, AttributeError):
    def __init__(self, estimator: object) -> None:
        name = type(estimator).__name__
        super().__init__(f"this {name} is not fitted yet; call fit(...) first", estimator=name)


class TrainingDataError(PredictError):
    pass


class ModelFileError(PredictError):
    exit_code = 6
    http_status = 404

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message, path=path)
        self.path = path


def check_is_fitted(estimator: object, attribute: str) -> None:
    """Raise `NotFittedError` unless `estimator` has the learned `attribute` (ending in `_`)."""
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(estimator)
