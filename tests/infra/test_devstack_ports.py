"""devstack.ports: the ports a stack starts its servers on are distinct and free."""

from __future__ import annotations

import socket

from devstack.ports import free_port, free_ports


def test_ports_chosen_together_are_distinct_and_each_can_be_bound() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_one_free_port_can_be_bound() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))
