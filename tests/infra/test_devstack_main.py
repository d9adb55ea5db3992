"""`make run` (python -m devstack): what it does before it starts anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

CHILD = """
import signal
from devstack.__main__ import stop_on_ctrl_c
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # inherited, as a background job's
stop_on_ctrl_c()
try:
    signal.raise_signal(signal.SIGINT)
except KeyboardInterrupt:
    print("stopped by Ctrl-C")
"""


def test_ctrl_c_stops_it_even_when_started_with_sigint_ignored() -> None:
    """A background job of a script starts with SIGINT ignored (bash: no job control), and
    Python keeps it ignored: the stack then never stopped on Ctrl-C (test_examples' Ctrl-C
    timed out, its servers left running)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        check=False,
    )
    assert done.stdout.strip() == "stopped by Ctrl-C", done.stderr[-2000:]
