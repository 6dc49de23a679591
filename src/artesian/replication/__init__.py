"""Replication: followers pull from leaders (Kafka's ReplicaFetcherThread)."""
