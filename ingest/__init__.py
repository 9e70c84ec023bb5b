"""Ingest: the path of one message from the broker to the store.

source (MQTT) -> decode + validate -> spool (durable, on disk) -> ack -> drain in batches -> store
"""
