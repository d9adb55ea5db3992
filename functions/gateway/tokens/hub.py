"""Fetch tokenizer files from the Hugging Face Hub (or a mirror set by HF_ENDPOINT)."""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class HubDownloadError(Exception):
    pass


def split_repo(spec: str) -> tuple[str, str]:
    """`org/name@revision` -> (`org/name`, `revision`); the revision defaults to main."""
    repo, _, revision = spec.partition("@")
    return repo, revision or "main"


def download_tokenizer(
    spec: str, *, dest: Path, endpoint: str, token: str | None, timeout: float = 60.0
) -> None:
    """Download tokenizer.json and tokenizer_config.json for `spec` into `dest`, atomically."""
    repo, revision = split_repo(spec)
    dest.mkdir(parents=True, exist_ok=True)
    for filename in TOKENIZER_FILES:
        url = "{}/{}/resolve/{}/{}".format(
            endpoint.rstrip("/"), repo, urllib.parse.quote(revision, safe=""), filename
        )
        request = urllib.request.Request(url, headers={"User-Agent": "gpu-gateway"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        logger.info("downloading tokenizer file", extra={"repo": repo, "file": filename})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            if filename != "tokenizer.json" and exc.code == 404:
                continue  # a tokenizer without a config (no chat template) is still usable
            raise HubDownloadError(f"{url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise HubDownloadError(f"{url}: {exc}") from exc
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{filename}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest / filename)
