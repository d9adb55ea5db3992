"""Guardrails: a safety model (Llama Guard, served on the operator's own GPUs) screens
prompts and completions under the models config's guard policies. docs/GUARDRAILS.md."""

from gateway.guard.service import NO_SCREENING, GuardService, Screening

__all__ = ["NO_SCREENING", "GuardService", "Screening"]
