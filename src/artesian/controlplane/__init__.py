"""The serverless control plane (pillar 1): provisions Kafka clusters and scales them.

The control plane and each data plane never call each other. Desired state travels from the
control plane to the data planes through one compacted Kafka topic, observed state back through
another; either side may be down without stalling the other, and catches up from the topics
when it returns.
"""
