#!/bin/sh
# Writes COUNT copies of one audit record (the first line of RECORD_FILE) with distinct evaluation
# ids, for measuring `pimgate rules backtest` on a large log:
#   scripts/backtest-sample.sh audit.jsonl 10000 > sample.jsonl
#   /usr/bin/time -v pimgate rules backtest --audit sample.jsonl rules/ --config pimgate.toml
set -eu
record_file=${1:?usage: backtest-sample.sh RECORD_FILE COUNT}
count=${2:?usage: backtest-sample.sh RECORD_FILE COUNT}
head -n 1 "$record_file" | awk -v count="$count" '{
    for (i = 1; i <= count; i++) {
        line = $0
        id = sprintf("\"evaluationId\":\"%08x-0000-4000-8000-%012x\"", i, i)
        sub(/"evaluationId":"[^"]*"/, id, line)
        print line
    }
}'
