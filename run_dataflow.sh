#!/usr/bin/env bash
# Dataflow launcher (GPU workers, Flex Template, Cloud Scheduler): not built yet.
# The pipeline itself runs locally: ./run_local.sh --help
echo "run_dataflow.sh is not implemented yet (Dataflow, GPU image, Flex Template and" \
     "scheduling are the cloud issue); run locally with ./run_local.sh" >&2
exit 2
