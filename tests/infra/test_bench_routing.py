"""make bench's routing row runs and measures routing's own work (more than none, and more
with more endpoints to keep state for); a smoke test, not a timing assertion."""

from __future__ import annotations

import asyncio

from devstack.bench import routing


def test_routing_row_measures_a_routed_backend_beside_the_direct_one() -> None:
    rows = asyncio.run(routing.measure(200))
    assert [label for label, _, _ in rows] == [
        "direct",
        "routed, 1 endpoint",
        "routed, 3 endpoints",
    ]
    assert all(buffered > 0 and streamed > 0 for _, buffered, streamed in rows)
    table = routing.render(rows)
    assert table.count("\n") == 4 and "routed, 3 endpoints" in table
