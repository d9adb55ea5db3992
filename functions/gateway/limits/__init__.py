"""Per-key limits (rpm, tpm, monthly token budget), shared by every Lambda instance."""

from gateway.limits.refusals import BudgetExceededError
from gateway.limits.store import Admission, LimitStore

__all__ = ["Admission", "BudgetExceededError", "LimitStore"]
