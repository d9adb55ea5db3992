"""Three gpusim replicas, each its own process on an ephemeral 127.0.0.1 port, with a
finite KV cache, a bounded batch, prefill time per uncached token and cached tokens in
usage (as vLLM with --enable-prompt-tokens-details)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.ports import free_ports

MODEL = "qwen3"


@dataclass(frozen=True)
class GpuShape:
    num_gpu_blocks: int = 1200
    max_num_seqs: int = 16
    ttft_ms: float = 20.0
    tpot_ms: float = 10.0
    decode_ms_per_seq: float = 1.0
    prefill_ms_per_token: float = 0.5
    completion_tokens: int = 48

    def args(self, *, slow: float = 1.0) -> list[str]:
        """gpusim's flags; `slow` multiplies the decode time (tpot and per-sequence)."""
        return [
            f"--num-gpu-blocks-override={self.num_gpu_blocks}",
            f"--max-num-seqs={self.max_num_seqs}",
            f"--ttft-ms={self.ttft_ms}",
            f"--tpot-ms={self.tpot_ms * slow}",
            f"--decode-ms-per-seq={self.decode_ms_per_seq * slow}",
            f"--prefill-ms-per-token={self.prefill_ms_per_token}",
            f"--completion-tokens={self.completion_tokens}",
            "--enable-prompt-tokens-details",
        ]


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gpusim at {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gpusim at {url} did not start")


@contextmanager
def replicas(
    tokenizers_dir: Path, shape: GpuShape, *, slow: Sequence[float] = (1.0, 1.0, 1.0)
) -> Iterator[list[str]]:
    """Start one replica per `slow` factor; yield their base URLs; stop them."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for factor, port in zip(slow, free_ports(len(slow)), strict=True):
            command = [sys.executable, "-m", "gpusim", f"--port={port}", "--preload"]
            command += [f"--tokenizers-dir={tokenizers_dir}", f"--models={MODEL}"]
            process = subprocess.Popen(
                command + shape.args(slow=factor), env=env, stdout=subprocess.DEVNULL
            )
            started.append((f"http://127.0.0.1:{port}", process))
        for url, process in started:
            _wait_healthy(url, process)
        yield [url for url, _ in started]
    finally:
        for _, process in started:
            process.terminate()
        for _, process in started:
            process.wait(timeout=10)
