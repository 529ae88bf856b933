"""Predictive scoring: a calibrated model of conversion, buckets, reasons and honest evaluation.

model.py      LeadModel - LightGBM, time-ordered validation tail, calibration, explain, save/load
baselines.py  LogisticBaseline, OdooNaiveBayes, HGBBaseline - what the model must beat
metrics.py    AUC (+ DeLong CI, chance verdict), PR-AUC, lift, capture, Brier, calibration
buckets.py    BucketScheme - A/B/C/D by volume and a stable control holdout
card.py       ModelCard - the numbers saved beside every model
explain.py    FeatureDescriber - per-lead factors in plain words
frame.py      FeatureSchema - column order and categories fixed at fit time
datasets.py   public datasets (bank marketing, X Education, Maven CRM) with their splits
"""

from .baselines import HGBBaseline, LogisticBaseline, OdooNaiveBayes
from .buckets import BucketScheme
from .card import ModelCard
from .errors import ModelFileError, NotFittedError, PredictError, TrainingDataError
from .explain import Explanation, Factor, FeatureDescriber
from .metrics import Evaluation, chance_verdict, evaluate
from .model import LeadModel

__all__ = [
    "BucketScheme",
    "Evaluation",
    "Explanation",
    "Factor",
    "FeatureDescriber",
    "HGBBaseline",
    "LeadModel",
    "LogisticBaseline",
    "ModelCard",
    "ModelFileError",
    "NotFittedError",
    "OdooNaiveBayes",
    "PredictError",
    "TrainingDataError",
    "chance_verdict",
    "evaluate",
]
