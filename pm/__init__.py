"""FlexLog's replica storage engine on persistent memory (libpmemobj), with a DRAM cache and an SSD tier."""
