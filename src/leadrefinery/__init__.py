"""Lead Refinery: raw behavioural data about prospects -> a ranked, explained list of leads."""

from .errors import LeadRefineryError
from .project import Project

__all__ = ["LeadRefineryError", "Project"]
__version__ = "0.1.0"
