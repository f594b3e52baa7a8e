#!/bin/sh
# The consumer image's entry point: consumer.properties from the stage's values, then the MultiLangDaemon.
# The daemon starts `python -m handlers.tracking.kcl_consumer` per leased shard (executableName) from /app.
set -eu
cd "${APP_DIR:-/app}"  # the image's WORKDIR: the daemon starts the record processors from here
python -m handlers.tracking.kcl_properties --out "$KCL_PROPERTIES"
# amazon-kclpy's helper prints the daemon's command line: java -cp <its jars>:<the properties' folder>
# software.amazon.kinesis.multilang.MultiLangDaemon ... consumer.properties
command=$(amazon_kclpy_helper.py --print_command --java "$(command -v java)" --properties "$KCL_PROPERTIES")
echo "starting the KCL MultiLangDaemon: $command" >&2
# exec: the daemon becomes the container's PID 1 and gets docker stop's SIGTERM itself (it shuts its record
# processors down and hands its leases over)
# shellcheck disable=SC2086 # the helper's command line is split on spaces on purpose (no spaces in its paths)
exec $command
