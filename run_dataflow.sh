#!/usr/bin/env bash
# Runs the texture pipeline on Dataflow with GPU workers, or schedules it.
# See usage() below, or ./run_dataflow.sh --help. Every argument is passed on quoted.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<'EOF'
Usage:
  ./run_dataflow.sh --project P --region R --bucket gs://B [options] [pipeline flags]
  ./run_dataflow.sh schedule --cron '0 3 * * *' --service-account SA \
      --project P --region R --bucket gs://B [options] [pipeline flags]

Builds the worker image with Cloud Build (Dockerfile: TensorFlow GPU image + Beam SDK
+ this package), builds the Flex Template (dataflow/metadata.json) and launches it
with GPU workers. `schedule` does the same build, then creates or updates a Cloud
Scheduler job that launches the template on the cron schedule (each run skips the
scenes already finished: incremental ingestion).

Options:
  --project P            Google Cloud project (required)
  --region R             Dataflow, Artifact Registry and Scheduler region (required)
  --bucket gs://B        bucket for the template, staging and temp files (required)
  --gpu-type T           nvidia-tesla-t4 (default), nvidia-l4, nvidia-tesla-a100, ...
  --gpu-count N          GPUs per worker (default 1)
  --machine-type M       worker machine type (default: n1-standard-8 for T4/V100/P4,
                         g2-standard-8 for L4, a2-highgpu-1g for A100)
  --max-workers N        autoscaling limit (default 10)
  --disk-size-gb N       worker boot disk (default 50; the image is large)
  --harness-threads N    worker harness threads sharing the GPU (default 4)
  --image URI            worker image (default REGION-docker.pkg.dev/P/glcm/glcm-worker:TAG)
  --skip-build           use the existing image and template; build nothing
  --job-name NAME        Dataflow job name (default glcm-texture-<UTC time>; the
                         scheduled job is always named glcm-texture)
  --dry-run              print every command, exactly, and run none (no account needed)
  -h, --help             this text
Schedule options:
  --cron 'M H D M W'     schedule, cron syntax (required)
  --time-zone Z          e.g. Europe/Paris (default Etc/UTC)
  --scheduler-job NAME   Cloud Scheduler job name (default glcm-texture)
  --service-account SA   service account the scheduler launches as (needs
                         roles/dataflow.admin and roles/iam.serviceAccountUser)

Pipeline flags (as for python -m pipeline): --input (required: a gs:// glob, folder or
@gs://list), --output (default gs://B/glcm-output), --features, --window,
--distances, --angles, --levels, --quantize, --bands, --mode, --block, --tile,
--force, --fail-on-error.
EOF
}

command_name=run
if [ "${1:-}" = "schedule" ]; then
  command_name=schedule
  shift
fi

project="" region="" bucket="" gpu_type="nvidia-tesla-t4" gpu_count=1 machine_type=""
max_workers=10 disk_size_gb=50 harness_threads=4 image="" skip_build=0 dry_run=0
job_name="" cron="" time_zone="Etc/UTC" scheduler_job="glcm-texture" service_account=""
pipeline_args=()

die() { echo "run_dataflow.sh: $*" >&2; exit 2; }

# Splits --name=value so both spellings work.
args=()
for arg in "$@"; do
  case "$arg" in
    --*=*) args+=("${arg%%=*}" "${arg#*=}") ;;
    *) args+=("$arg") ;;
  esac
done
set -- ${args[@]+"${args[@]}"}

need_value() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --project) need_value "$@"; project="$2"; shift 2 ;;
    --region) need_value "$@"; region="$2"; shift 2 ;;
    --bucket) need_value "$@"; bucket="${2%/}"; shift 2 ;;
    --gpu-type) need_value "$@"; gpu_type="$2"; shift 2 ;;
    --gpu-count) need_value "$@"; gpu_count="$2"; shift 2 ;;
    --machine-type) need_value "$@"; machine_type="$2"; shift 2 ;;
    --max-workers) need_value "$@"; max_workers="$2"; shift 2 ;;
    --disk-size-gb) need_value "$@"; disk_size_gb="$2"; shift 2 ;;
    --harness-threads) need_value "$@"; harness_threads="$2"; shift 2 ;;
    --image) need_value "$@"; image="$2"; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --job-name) need_value "$@"; job_name="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --cron) need_value "$@"; cron="$2"; shift 2 ;;
    --time-zone) need_value "$@"; time_zone="$2"; shift 2 ;;
    --scheduler-job) need_value "$@"; scheduler_job="$2"; shift 2 ;;
    --service-account) need_value "$@"; service_account="$2"; shift 2 ;;
    --*) # a pipeline flag: --name value, or a switch (--force)
      if [ $# -ge 2 ] && [[ "$2" != --* ]]; then
        pipeline_args+=("$1" "$2"); shift 2
      else
        pipeline_args+=("$1" "true"); shift
      fi ;;
    *) die "unexpected argument '$1' (see --help)" ;;
  esac
done

[ -n "$project" ] || die "--project is required (see --help)"
[ -n "$region" ] || die "--region is required"
[[ "$bucket" == gs://?* ]] || die "--bucket must be gs://BUCKET, got '${bucket}'"
[[ "$gpu_count" =~ ^[1-9][0-9]*$ ]] || die "--gpu-count must be a positive integer"
[[ "$max_workers" =~ ^[1-9][0-9]*$ ]] || die "--max-workers must be a positive integer"
[[ "$disk_size_gb" =~ ^[1-9][0-9]*$ ]] || die "--disk-size-gb must be a positive integer"
[[ "$harness_threads" =~ ^[1-9][0-9]*$ ]] || die "--harness-threads must be a positive integer"
if [ "$command_name" = schedule ]; then
  [ -n "$cron" ] || die "schedule needs --cron, e.g. --cron '0 3 * * *'"
  [ -n "$service_account" ] || die "schedule needs --service-account (see --help)"
fi

if [ -z "$machine_type" ]; then
  case "$gpu_type" in
    nvidia-l4) machine_type=g2-standard-8 ;;
    nvidia-tesla-a100) machine_type=a2-highgpu-1g ;;
    nvidia-a100-80gb) machine_type=a2-ultragpu-1g ;;
    *) machine_type=n1-standard-8 ;;
  esac
fi

# Pipeline parameters, as the Flex Template passes them: name=value, names with _.
declare -A params=()
names=()
i=0
while [ $i -lt ${#pipeline_args[@]} ]; do
  name="${pipeline_args[$i]#--}"
  name="${name//-/_}"
  value="${pipeline_args[$((i + 1))]}"
  if [ -n "${params[$name]+x}" ]; then
    die "--${name} given twice; a Flex Template takes one value per parameter (for several inputs use --input @gs://BUCKET/list.txt)"
  fi
  params[$name]="$value"
  names+=("$name")
  i=$((i + 2))
done
[ -n "${params[input]+x}" ] || die "--input is required: a gs:// glob, folder or @gs://list"
[[ "${params[input]#@}" == gs://* ]] || die "--input must be on Cloud Storage for Dataflow, got '${params[input]}'"
if [ -z "${params[output]+x}" ]; then
  params[output]="${bucket}/glcm-output"
  names+=(output)
fi
[[ "${params[output]}" == gs://* ]] || die "--output must be gs:// for Dataflow, got '${params[output]}'"

tag="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo latest)"
image="${image:-${region}-docker.pkg.dev/${project}/glcm/glcm-worker:${tag}}"
template="${bucket}/templates/glcm-texture.json"
accelerator="worker_accelerator=type:${gpu_type};count:${gpu_count};install-nvidia-driver"
experiments="use_runner_v2,no_use_multiple_sdk_containers"
# Options of the Beam/Dataflow runner, passed like the pipeline's own parameters.
runner_names=(sdk_container_image dataflow_service_options disk_size_gb
              number_of_worker_harness_threads)
for name in "${runner_names[@]}"; do
  [ -z "${params[$name]+x}" ] || die "--${name} is set by this script; use --image, --gpu-type/--gpu-count, --disk-size-gb or --harness-threads"
done
params[sdk_container_image]="$image"
params[dataflow_service_options]="$accelerator"
params[disk_size_gb]="$disk_size_gb"
params[number_of_worker_harness_threads]="$harness_threads"
names+=("${runner_names[@]}")

# Prints a command exactly (shell-quoted), then runs it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

parameter_flags=()
for name in "${names[@]}"; do
  value="${params[$name]}"
  if [[ "$value" == *,* ]]; then
    # gcloud splits dict flags on commas; ^~^ makes ~ the separator instead.
    parameter_flags+=(--parameters "^~^${name}=${value}")
  else
    parameter_flags+=(--parameters "${name}=${value}")
  fi
done

if [ "$dry_run" -eq 0 ]; then
  command -v gcloud >/dev/null || die "gcloud is not installed (https://cloud.google.com/sdk); --dry-run prints the commands without it"
fi

if [ "$skip_build" -eq 0 ]; then
  if [[ "$image" == "${region}-docker.pkg.dev/${project}/glcm/"* ]]; then
    echo "# the Artifact Registry repository 'glcm' (created when missing)"
    if [ "$dry_run" -eq 1 ] || ! gcloud artifacts repositories describe glcm \
        --project="$project" --location="$region" >/dev/null 2>&1; then
      run gcloud artifacts repositories create glcm --project="$project" \
        --location="$region" --repository-format=docker \
        --description="glcm-texture worker images"
    fi
  fi
  echo "# the worker image (Dockerfile), built by Cloud Build"
  run gcloud builds submit "$root" --project="$project" --region="$region" \
    --tag="$image" --timeout=3600s
  echo "# the Flex Template spec"
  run gcloud dataflow flex-template build "$template" --project="$project" \
    --image="$image" --sdk-language=PYTHON \
    --metadata-file="$root/dataflow/metadata.json"
fi

if [ "$command_name" = run ]; then
  job_name="${job_name:-glcm-texture-$(date -u +%Y%m%d-%H%M%S)}"
  echo "# the job: ${machine_type} workers with ${gpu_count} x ${gpu_type}"
  run gcloud dataflow flex-template run "$job_name" --project="$project" \
    --region="$region" --template-file-gcs-location="$template" \
    --worker-machine-type="$machine_type" --max-workers="$max_workers" \
    --additional-experiments="$experiments" \
    --staging-location="${bucket}/staging" --temp-location="${bucket}/temp" \
    "${parameter_flags[@]}"
  exit 0
fi

# schedule: the Flex Template launch request, sent by Cloud Scheduler on the cron.
pairs=()
for name in "${names[@]}"; do pairs+=("$name" "${params[$name]}"); done
body="$(python3 - "$template" "$machine_type" "$max_workers" "$experiments" "$bucket" \
  "${pairs[@]}" <<'PY'
import json, sys
template, machine, workers, experiments, bucket, *pairs = sys.argv[1:]
body = {"launchParameter": {
    "jobName": "glcm-texture",
    "containerSpecGcsPath": template,
    "parameters": dict(zip(pairs[::2], pairs[1::2])),
    "environment": {"machineType": machine, "maxWorkers": int(workers),
                    "additionalExperiments": experiments.split(","),
                    "stagingLocation": bucket + "/staging",
                    "tempLocation": bucket + "/temp"}}}
print(json.dumps(body, sort_keys=True))
PY
)"
uri="https://dataflow.googleapis.com/v1b3/projects/${project}/locations/${region}/flexTemplates:launch"
common=(--project="$project" --location="$region" --schedule="$cron"
        --time-zone="$time_zone" --uri="$uri" --http-method=POST
        --oauth-service-account-email="$service_account"
        --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
        --message-body="$body")
echo "# the Cloud Scheduler job '${scheduler_job}': updated if it exists, else created"
if [ "$dry_run" -eq 1 ]; then
  run gcloud scheduler jobs describe "$scheduler_job" --project="$project" --location="$region"
  echo "# if it exists:"
  run gcloud scheduler jobs update http "$scheduler_job" "${common[@]}" \
    --update-headers=Content-Type=application/json
  echo "# otherwise:"
  run gcloud scheduler jobs create http "$scheduler_job" "${common[@]}" \
    --headers=Content-Type=application/json
elif gcloud scheduler jobs describe "$scheduler_job" --project="$project" \
    --location="$region" >/dev/null 2>&1; then
  run gcloud scheduler jobs update http "$scheduler_job" "${common[@]}" \
    --update-headers=Content-Type=application/json
else
  run gcloud scheduler jobs create http "$scheduler_job" "${common[@]}" \
    --headers=Content-Type=application/json
fi
