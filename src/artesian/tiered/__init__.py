"""Tiered storage (Infinite Storage): rolled segments copied to an object store and served
from there once local retention has deleted them (Kafka's KIP-405 remote log).

- ``remote_log_segment_metadata``: what is known of one remote segment, and its object names.
- ``remote_storage_manager``: the object store (obstore): copy, fetch, delete, list.
- ``remote_index_cache``: offset, time and transaction indexes of remote segments, fetched once.
- ``remote_log_manager``: per-partition copy and retention tasks, and remote reads.
"""
