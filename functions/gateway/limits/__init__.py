"""Per-key limits (rpm, tpm, monthly token budget), shared by every Lambda instance."""

from gateway.limits.admission import Admission, AdmissionUnconfirmedError
from gateway.limits.refusals import BudgetExceededError
from gateway.limits.store import LimitStore

__all__ = ["Admission", "AdmissionUnconfirmedError", "BudgetExceededError", "LimitStore"]
