"""Per-partition durable log: segments, indexes, recovery, retention (Kafka's storage layer)."""
