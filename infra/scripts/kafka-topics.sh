#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# kafka-topics from the cached jars (org.apache.kafka.tools.TopicCommand).
# --bootstrap-server defaults to $FLK_KAFKA_BROKERS or 127.0.0.1:$FLK_KAFKA_PORT.
#   infra/scripts/kafka-topics.sh --create --topic flk.submissions --partitions 12 --replication-factor 1
#   infra/scripts/kafka-topics.sh --list
#   infra/scripts/kafka-topics.sh --describe --topic flk.submissions
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$FLK_SCRIPTS_DIR/lib/kafka.sh"

args=("$@")
if [[ " ${args[*]} " != *" --bootstrap-server "* && " ${args[*]} " != *" --bootstrap-server="* ]]; then
  args=(--bootstrap-server "${FLK_KAFKA_BROKERS:-$FLK_BIND_HOST:$FLK_KAFKA_PORT}" "${args[@]}")
fi
kafka_tool_cmd
exec "${KAFKA_TOOL_CMD[@]}" org.apache.kafka.tools.TopicCommand "${args[@]}"
