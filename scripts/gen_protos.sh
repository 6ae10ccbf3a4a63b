#!/usr/bin/env bash
# Regenerates core/proto/flexlog_pb2*.py from core/proto/flexlog.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -I core/proto \
    --python_out=core/proto --pyi_out=core/proto --grpc_python_out=core/proto \
    core/proto/flexlog.proto
# protoc writes an absolute import; the package lives at flexlog.core.proto.
sed -i 's/^import flexlog_pb2 as flexlog__pb2/from flexlog.core.proto import flexlog_pb2 as flexlog__pb2/' \
    core/proto/flexlog_pb2_grpc.py
