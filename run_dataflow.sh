#!/usr/bin/env bash
# Dataflow launcher (GPU workers, Flex Template, Cloud Scheduler): not built yet.
echo "run_dataflow.sh is not implemented yet: the Beam pipeline comes first (README, Status)." >&2
exit 2
