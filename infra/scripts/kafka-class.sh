#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Run any Kafka class from the cached jars (fetched on first use):
#   infra/scripts/kafka-class.sh org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:19092 --topic t
#   infra/scripts/kafka-class.sh org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:19092 --topic t --from-beginning
# JVM options: FLK_KAFKA_TOOL_OPTS (default: -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$FLK_SCRIPTS_DIR/lib/kafka.sh"

[[ $# -ge 1 ]] || flk_die "usage: $(basename "$0") CLASS [ARGS...]"
kafka_tool_cmd
exec "${KAFKA_TOOL_CMD[@]}" "$@"
