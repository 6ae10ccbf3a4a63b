"""Kafka wire-protocol gateway in front of the FlexLog shared log."""
