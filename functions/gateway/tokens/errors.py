"""The one failure of counting that is the request's fault (imported without jinja2)."""

from __future__ import annotations


class TemplateRefused(ValueError):
    """The model's chat template refused the conversation: jinja2's own errors, the
    template's `raise_exception` (roles must alternate, ...), or chat_template_kwargs that
    name one of the template's fixed arguments. A 400; anything else a count raises is the
    gateway's failure (500)."""
