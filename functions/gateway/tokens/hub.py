"""Fetch tokenizer files from the Hugging Face Hub (or a mirror set by HF_ENDPOINT)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

REQUIRED_FILE = "tokenizer.json"
# What transformers 5's AutoTokenizer reads besides tokenizer.json: the config (class,
# legacy, add_prefix_space, special tokens, template) and a chat_template.jinja, which wins
# over the config's template.
OPTIONAL_FILES = ("tokenizer_config.json", "chat_template.jinja")

Progress = Callable[[str], None]


class HubDownloadError(Exception):
    pass


def folder_name(spec: str) -> str:
    """The folder of a tokenizer in TOKENIZERS_DIR and in the cache: "/" becomes "--"."""
    return spec.replace("/", "--")


def split_repo(spec: str) -> tuple[str, str]:
    """`org/name@revision` -> (`org/name`, `revision`); the revision defaults to main."""
    repo, _, revision = spec.partition("@")
    return repo, revision or "main"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def file_url(endpoint: str, repo: str, revision: str, filename: str) -> str:
    return "{}/{}/resolve/{}/{}".format(
        endpoint.rstrip("/"), repo, urllib.parse.quote(revision, safe=""), filename
    )


def _fetch(url: str, token: str | None, timeout: float) -> bytes | None:
    """The file's bytes, or None when the repo does not have it (404)."""
    request = urllib.request.Request(url, headers={"User-Agent": "gpu-gateway"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code in (401, 403):
            hint = "set HF_TOKEN" if not token else "check that HF_TOKEN may read this repo"
            raise HubDownloadError(f"{url}: HTTP {exc.code} (gated or private: {hint})") from exc
        raise HubDownloadError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise HubDownloadError(f"{url}: {exc}") from exc


def download_tokenizer(
    spec: str,
    *,
    dest: Path,
    endpoint: str,
    token: str | None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> int:
    """Download the tokenizer files of `spec` into `dest`; return the bytes written.

    tokenizer.json is written last, atomically, so a folder that has it is complete."""
    repo, revision = split_repo(spec)
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for filename in (*OPTIONAL_FILES, REQUIRED_FILE):
        url = file_url(endpoint, repo, revision, filename)
        started = time.monotonic()
        data = _fetch(url, token, timeout)
        if data is None:
            if filename == REQUIRED_FILE:
                raise HubDownloadError(f"{url}: HTTP 404 (no such repo, revision or file)")
            continue  # a tokenizer without a config (no chat template) is still usable
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{filename}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest / filename)
        total += len(data)
        elapsed = time.monotonic() - started
        logger.info(
            "downloaded tokenizer file",
            extra={"repo": repo, "revision": revision, "file": filename, "bytes": len(data)},
        )
        if progress is not None:
            progress(
                f"  {repo}@{revision} {filename:<22} {human_size(len(data)):>9} {elapsed:.1f} s"
            )
    return total
