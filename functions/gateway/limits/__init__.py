"""Per-key limits (rpm, tpm, monthly token budget), shared by every Lambda instance."""

from gateway.limits.store import Admission, BudgetExceededError, LimitStore

__all__ = ["Admission", "BudgetExceededError", "LimitStore"]
