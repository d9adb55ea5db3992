"""What a prompt's image and audio parts are billed at when the upstream reports no usage:
the gateway counts text only, and the model server alone counts media (README, "Token
counting")."""

from __future__ import annotations

from collections.abc import Sequence

# Tokens per part: OpenAI's figure for a high-detail 512x512 image tile set (765) and an
# estimate for a short audio clip.
MEDIA_TOKEN_ESTIMATE = {"image": 765, "audio": 750}


def media_token_estimate(modalities: Sequence[str]) -> int:
    return sum(MEDIA_TOKEN_ESTIMATE[m] for m in modalities)
