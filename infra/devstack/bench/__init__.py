"""`make bench`: the simulated GPU endpoint called directly and through the gateway.

Everything runs on this machine as separate processes on free 127.0.0.1 ports (stack.py):

- DynamoDB: moto's server with motofix (`python -m devstack.dynamodb`), tables from
  template.yaml, one API key
- gpusim with zero delay and 50 completion tokens (a stream is ~50 chunks)
- "gateway": the gateway (uvicorn, uvloop, httptools) in front of gpusim, whose DynamoDB is a
  stand-in (instantdb.py) that answers the usage write at once (or after --db-latency-ms)
  and forwards everything else (key lookups, admission) to moto: the gateway's own cost,
  botocore included, without a database's service time
- "gateway, moto DB" (unless --no-moto): a second gateway writing its usage to moto itself,
  which costs moto 7-11 ms of CPU per write on the same two cores

The load generator (load.py: aiohttp, in this process) sends a fixed number of requests per
phase (phases.py: non-streaming and streaming, at each concurrency), warm-up first,
alternating the paths in rounds so that noise hits all of them. It reports throughput,
latency and time to first token (streaming), the gateway's additions over direct, each
server's CPU per request (utime + stime from /proc/<pid>/stat), and the DynamoDB calls per
request on the path, then those calls for a key without limits and one with rpm, tpm and a
monthly budget. Then the gateway's CPU per request by route (routes.py) and the first
request of fresh gateway processes (cold.py). report.py renders the tables;
docs/BENCHMARKS.md explains the method and figures.

    python -m devstack.bench [--scale 0.2] [--rounds 2] [--db-latency-ms 5] [--no-moto]
                             [--cold-runs 3] [--route-requests 200]
"""

from devstack.bench.cold import ColdRow
from devstack.bench.config import (
    DIRECT,
    GATEWAY,
    GATEWAY_MOTO,
    BenchConfig,
    Phase,
    default_phases,
)
from devstack.bench.load import Measurement, percentile, split
from devstack.bench.report import COLUMNS, BenchResult, Row, render_markdown, write_results
from devstack.bench.routes import ROUTES, RouteRow
from devstack.bench.run import run_benchmark

__all__ = [
    "COLUMNS",
    "DIRECT",
    "GATEWAY",
    "GATEWAY_MOTO",
    "ROUTES",
    "BenchConfig",
    "BenchResult",
    "ColdRow",
    "Measurement",
    "Phase",
    "RouteRow",
    "Row",
    "default_phases",
    "percentile",
    "render_markdown",
    "run_benchmark",
    "split",
    "write_results",
]
