#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Producer load generator from the cached jars (org.apache.kafka.tools.ProducerPerformance);
# arguments are passed through unchanged, e.g.
#   infra/scripts/kafka-perf.sh --topic t --num-records 20000 --record-size 512 --throughput -1 \
#     --producer-props bootstrap.servers=127.0.0.1:19092 acks=all
# When no producer settings are given at all, bootstrap.servers defaults to the local broker.
# JVM options: FLK_KAFKA_TOOL_OPTS (default here: -Xmx512m -XX:+UseG1GC, full JIT).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$FLK_SCRIPTS_DIR/lib/kafka.sh"

args=("$@")
joined=" ${args[*]} "
if [[ $# -gt 0 && "$joined" != *bootstrap.servers* && "$joined" != *" --bootstrap-server"* \
      && "$joined" != *" --producer-props "* && "$joined" != *" --producer.config "* \
      && "$joined" != *" --help "* ]]; then
  args+=(--producer-props "bootstrap.servers=${FLK_KAFKA_BROKERS:-$FLK_BIND_HOST:$FLK_KAFKA_PORT}")
fi
export FLK_KAFKA_TOOL_OPTS="${FLK_KAFKA_TOOL_OPTS:--Xmx512m -XX:+UseG1GC}"
kafka_tool_cmd
exec "${KAFKA_TOOL_CMD[@]}" org.apache.kafka.tools.ProducerPerformance "${args[@]}"
