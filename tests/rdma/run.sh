#!/bin/sh
# tests/rdma/run.sh - runs one test program inside the soft-RoCE guest (tests/rdma/vm.sh run.sh PROGRAM).
exec "$@"
