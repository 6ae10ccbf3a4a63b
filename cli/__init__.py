"""The composition of a FlexLog-Kafka cluster: the `flexlog` command, the local launcher, and
the status views that span every layer. It sits above `flexlog.core`, `flexlog.pm` and
`flexlog.gateway`; nothing below imports it."""
