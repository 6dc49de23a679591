"""Connections this broker opens to the others for requests of its own (WriteTxnMarkers,
ReadShareGroupState and WriteShareGroupState): one per broker, over the inter-broker
listener and its security, made again when that broker's address changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from artesian.replication.replica_fetcher import LeaderConnection

if TYPE_CHECKING:
    from artesian.broker.server import Broker


class BrokerConnections:
    def __init__(self, broker: Broker, purpose: str) -> None:
        self.broker = broker
        self.client_id = f"artesian-{purpose}-{broker.node_id}".encode()
        self._connections: dict[int, LeaderConnection] = {}

    def get(self, node: int) -> LeaderConnection | None:
        """The connection to ``node``; None when the metadata has no address for it."""
        address = self.broker.inter_broker_address(node)
        if address is None:
            return None
        conn = self._connections.get(node)
        if conn is None or (conn.host, conn.port) != address:
            if conn is not None:
                conn.close()
            conn = self._connections[node] = LeaderConnection(
                address[0],
                address[1],
                self.client_id,
                self.broker.config.get_int("replica.socket.timeout.ms") / 1000,
                self.broker.inter_broker_security,
            )
        return conn

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
