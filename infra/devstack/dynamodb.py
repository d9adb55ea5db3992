"""A local DynamoDB: moto's server, patched to keep DynamoDB's guarantees (motofix).

`python -m devstack.dynamodb --port 8001` serves until terminated. Running it as its own
process keeps its state apart from any in-process `moto.mock_aws` (which resets moto's
shared backends when it exits) and off the caller's GIL.
"""

from __future__ import annotations

import argparse
import signal
import threading

from moto.server import ThreadedMotoServer

from devstack import motofix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    motofix.install()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
