"""FlexLog's replica storage engine on persistent memory (libpmemobj), with a DRAM cache and an SSD tier."""

from flexlog.pm.engine import PmEngine

__all__ = ["PmEngine"]
