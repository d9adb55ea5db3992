#!/usr/bin/env python3
"""Build the tokenizer layer: the tokenizer files of every configured model.

Reads the models config (the same JSON as MODELS_CONFIG) and writes

    <out>/tokenizers/<name>/tokenizer.json         (required)
    <out>/tokenizers/<name>/tokenizer_config.json  (chat template, special tokens; if any)
    <out>/tokenizers/<name>/chat_template.jinja    (newer repos keep the template here; if any)
    <out>/gateway/models.json                      (the config the layer was built for)

where <name> is the model entry's `tokenizer` with "/" replaced by "--". A layer's content
is mounted at /opt, so the functions find them at /opt/tokenizers/<name>/ (TOKENIZERS_DIR)
and /opt/gateway/models.json.

Files come from --from-dir (a local directory, looked up as <dir>/<name>, <dir>/<tokenizer>
or <dir>/<model id>) or else from the Hugging Face Hub:
$HF_ENDPOINT/<tokenizer>/resolve/<revision>/<file>, with $HF_TOKEN as a bearer token for
gated repositories. Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "build" / "tokenizers"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
REQUIRED_FILE = "tokenizer.json"
OPTIONAL_FILES = ("tokenizer_config.json", "chat_template.jinja")
USER_AGENT = "gpu-gateway-layer-builder/1.0 (python-urllib)"


class BuildError(Exception):
    """A problem the user must fix (bad config, missing file, refused download)."""


@dataclass(frozen=True)
class Tokenizer:
    """One tokenizer to put in the layer, and the models that use it."""

    repo: str
    revision: str
    model_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.repo.replace("/", "--")


def log(message: str) -> None:
    print(message, flush=True)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def load_config(config_file: Path | None) -> tuple[dict[str, Any] | None, str]:
    """The models config and where it came from: --config, $MODELS_CONFIG, $MODELS_CONFIG_FILE."""
    if config_file is not None:
        text, source = config_file.read_text(encoding="utf-8"), str(config_file)
    elif os.environ.get("MODELS_CONFIG"):
        text, source = os.environ["MODELS_CONFIG"], "$MODELS_CONFIG"
    elif os.environ.get("MODELS_CONFIG_FILE"):
        path = Path(os.environ["MODELS_CONFIG_FILE"])
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        return None, "nothing"
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuildError(f"models config from {source} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("models"), list):
        raise BuildError(f'models config from {source} must be {{"models": [...]}}')
    return config, source


def tokenizers_of(config: dict[str, Any], default_revision: str) -> list[Tokenizer]:
    """Distinct (tokenizer, revision) pairs of the config, in order of first use."""
    found: dict[tuple[str, str], list[str]] = {}
    for index, model in enumerate(config["models"]):
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise BuildError(f"models[{index}] needs a string 'id'")
        repo = model.get("tokenizer")
        if not repo:
            log(f"warning: model {model['id']!r} has no 'tokenizer'; nothing to bundle for it")
            continue
        if not isinstance(repo, str) or repo.startswith("/") or ".." in repo.split("/"):
            raise BuildError(f"model {model['id']!r}: bad tokenizer name {repo!r}")
        revision = str(model.get("tokenizer_revision") or default_revision)
        found.setdefault((repo, revision), []).append(model["id"])
    names: dict[str, str] = {}
    for repo, revision in found:
        name = repo.replace("/", "--")
        if name in names and names[name] != revision:
            raise BuildError(f"tokenizer {repo!r} is configured at two revisions")
        names[name] = revision
    return [Tokenizer(repo, rev, tuple(ids)) for (repo, rev), ids in found.items()]


def local_source(from_dir: Path, tokenizer: Tokenizer) -> Path | None:
    candidates = [from_dir / tokenizer.name, from_dir / tokenizer.repo]
    candidates += [from_dir / model_id for model_id in tokenizer.model_ids]
    for candidate in candidates:
        if (candidate / REQUIRED_FILE).is_file():
            return candidate
    return None


class _DropAuthOnHostChange(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never send the Hub token to another host (e.g. its CDN)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc
            if urllib.parse.urlsplit(new.full_url).netloc != old_host:
                new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_DropAuthOnHostChange)


def download(url: str, dest: Path, token: str | None, *, required: bool) -> int | None:
    """Download url to dest; return its size, or None if it does not exist (and not required)."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    part = dest.with_name(dest.name + ".part")
    try:
        with _OPENER.open(request, timeout=60) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, length=1024 * 1024)
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        if exc.code == 404 and not required:
            return None
        if exc.code in (401, 403):
            hint = "set HF_TOKEN" if not token else "check that HF_TOKEN may read this repo"
            raise BuildError(f"{url}: HTTP {exc.code} (gated or private repo? {hint})") from exc
        raise BuildError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise BuildError(f"{url}: {exc}") from exc
    part.replace(dest)
    return dest.stat().st_size


def fetch(
    tokenizer: Tokenizer,
    dest: Path,
    *,
    from_dir: Path | None,
    hf_endpoint: str | None,
    token: str | None,
) -> int:
    """Put one tokenizer's files in dest; return the bytes written."""
    dest.mkdir(parents=True, exist_ok=True)
    source = local_source(from_dir, tokenizer) if from_dir else None
    total = 0
    if source is not None:
        for filename in (REQUIRED_FILE, *OPTIONAL_FILES):
            if (source / filename).is_file():
                shutil.copyfile(source / filename, dest / filename)
                size = (dest / filename).stat().st_size
                total += size
                log(f"  {filename:<22} {human_size(size):>9}  copied from {source}")
        return total
    if hf_endpoint is None:
        raise BuildError(
            f"tokenizer {tokenizer.repo!r} (models {', '.join(tokenizer.model_ids)}) is not in "
            f"{from_dir} and downloads are off (--no-download)"
        )
    base = f"{hf_endpoint.rstrip('/')}/{tokenizer.repo}/resolve/{tokenizer.revision}"
    for filename in (REQUIRED_FILE, *OPTIONAL_FILES):
        url = f"{base}/{filename}"
        started = time.monotonic()
        size = download(url, dest / filename, token, required=filename == REQUIRED_FILE)
        if size is None:
            log(f"  {filename:<22} {'-':>9}  not in the repo")
            continue
        total += size
        elapsed = time.monotonic() - started
        log(f"  {filename:<22} {human_size(size):>9}  {url} ({elapsed:.1f} s)")
    return total


def build(
    config: dict[str, Any] | None,
    out: Path,
    *,
    from_dir: Path | None,
    hf_endpoint: str | None,
    token: str | None,
    revision: str = "main",
) -> int:
    """Write the layer into out (replacing what was there); return the bytes written."""
    if out.exists():
        shutil.rmtree(out)
    (out / "tokenizers").mkdir(parents=True)
    (out / "gateway").mkdir()
    if config is None:
        (out / "tokenizers" / "EMPTY").write_text(
            "No models config was given when this layer was built.\n", encoding="utf-8"
        )
        return 0
    total = 0
    tokenizers = tokenizers_of(config, revision)
    for number, tokenizer in enumerate(tokenizers, 1):
        log(
            f"[{number}/{len(tokenizers)}] {tokenizer.repo}@{tokenizer.revision} "
            f"-> tokenizers/{tokenizer.name} (models: {', '.join(tokenizer.model_ids)})"
        )
        dest = out / "tokenizers" / tokenizer.name
        total += fetch(tokenizer, dest, from_dir=from_dir, hf_endpoint=hf_endpoint, token=token)
    models_json = out / "gateway" / "models.json"
    models_json.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    total += models_json.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        type=Path,
        help="models config JSON file (default: $MODELS_CONFIG text, then $MODELS_CONFIG_FILE)",
    )
    parser.add_argument(
        "--from-dir",
        type=Path,
        help="copy tokenizers from this directory when present there (else download)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading a tokenizer that --from-dir lacks",
    )
    parser.add_argument("--revision", default="main", help="Hub revision (default: main)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        if args.from_dir is not None and not args.from_dir.is_dir():
            raise BuildError(f"--from-dir {args.from_dir} is not a directory")
        config, source = load_config(args.config)
        log(f"tokenizer layer: models config from {source}, writing {args.out}")
        hf_endpoint = None if args.no_download else os.environ.get("HF_ENDPOINT")
        if not args.no_download and not hf_endpoint:
            hf_endpoint = DEFAULT_HF_ENDPOINT
        total = build(
            config,
            args.out,
            from_dir=args.from_dir,
            hf_endpoint=hf_endpoint,
            token=os.environ.get("HF_TOKEN") or None,
            revision=args.revision,
        )
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if config is None:
        log(
            "warning: no models config (--config, $MODELS_CONFIG or $MODELS_CONFIG_FILE): the "
            "layer holds no tokenizers and no models.json; deploy with the ModelsConfig or "
            "ModelsConfigSsmParameter parameter, tokenizers then download at run time"
        )
    log(f"tokenizer layer: {human_size(total)} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
