"""Kafka API handlers: one module per API family, each declaring the versions it serves."""
