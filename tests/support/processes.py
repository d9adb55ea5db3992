"""Stop a child process a test started, leaving nothing for the garbage collector.

A Popen still running when collected, or a pipe left open, is a ResourceWarning wherever
gc happens to run (pytest's `filterwarnings = error` makes it a failure in another test).
"""

from __future__ import annotations

import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any], *, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; reaped, and its pipes closed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
