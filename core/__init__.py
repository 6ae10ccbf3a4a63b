"""FlexLog core: colors, sequencer tree, replicated shards and the native client."""
