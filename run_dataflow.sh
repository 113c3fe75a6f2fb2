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

Builds the worker image with Cloud Build (Dockerfile: Beam SDK image + TensorFlow
with its CUDA/cuDNN wheels + this package), builds a Flex Template for that image
(gs://B/templates/glcm-texture-<tag>.json, one per image tag) and launches it with
GPU workers. `schedule` does the same build, then creates or updates a Cloud
Scheduler job that launches that template and image on the cron schedule (each run
skips the scenes already finished: incremental ingestion).

Options:
  --project P            Google Cloud project (required)
  --region R             Dataflow, Artifact Registry and Scheduler region (required)
  --bucket gs://B        bucket for the template, staging and temp files (required)
  --gpu-type T           nvidia-tesla-t4 (default), nvidia-tesla-p4, nvidia-tesla-v100,
                         nvidia-tesla-p100, nvidia-l4, nvidia-tesla-a100,
                         nvidia-a100-80gb, nvidia-h100-80gb, nvidia-h100-mega-80gb,
                         or none (CPU workers)
  --gpu-count N          GPUs per worker (default 1)
  --machine-type M       worker machine type (default: the smallest that carries the
                         GPUs: n1-standard-8 for T4/P4/V100/P100, g2-standard-8 for
                         one L4, a2-highgpu-Ng / a2-ultragpu-Ng / a3-highgpu-Ng for
                         A100 / A100 80GB / H100); impossible pairs are refused
  --service-account SA   worker (and launcher) service account e-mail; also the
                         identity Cloud Scheduler calls Dataflow with
  --worker-zone Z        zone for the workers (one with the GPU type; default: any
                         in the region)
  --max-workers N        autoscaling limit (default 10)
  --disk-size-gb N       worker boot disk (default 50; the image is large)
  --harness-threads N    worker harness threads sharing the GPU (default 4)
  --image URI            worker image (default REGION-docker.pkg.dev/P/glcm/glcm-worker:TAG,
                         TAG the current git commit)
  --skip-build           build nothing: launch the image given by --image URI:TAG
                         and the template built for it earlier
  --job-name NAME        Dataflow job name (default glcm-texture-<UTC time>; the
                         scheduled job is always named glcm-texture)
  --dry-run              print every command, exactly, and run none (no account needed)
  -h, --help             this text
Schedule options:
  --cron 'M H D M W'     schedule, cron syntax (required)
  --time-zone Z          e.g. Europe/Paris (default Etc/UTC)
  --scheduler-job NAME   Cloud Scheduler job name (default glcm-texture)
  --scheduler-service-account SA
                         identity the scheduler calls Dataflow with (default:
                         --service-account; needs roles/dataflow.admin and
                         roles/iam.serviceAccountUser on the worker account)

Pipeline flags (as for python -m pipeline): --input (required: a gs:// glob, folder or
@gs://list), --output (default gs://B/glcm-output), --features, --window,
--distances, --angles, --levels, --quantize, --bands, --mode, --block, --tile,
--force, --fail-on-error, --verbose. --accelerator is set from --gpu-type: required
with a GPU (a worker that sees none fails at start-up), none without.
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
scheduler_account="" worker_zone=""
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
    --scheduler-service-account) need_value "$@"; scheduler_account="$2"; shift 2 ;;
    --worker-zone) need_value "$@"; worker_zone="$2"; shift 2 ;;
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
scheduler_account="${scheduler_account:-$service_account}"
if [ "$command_name" = schedule ]; then
  [ -n "$cron" ] || die "schedule needs --cron, e.g. --cron '0 3 * * *'"
  [ -n "$scheduler_account" ] || die "schedule needs --service-account or --scheduler-service-account (see --help)"
fi
if [ "$skip_build" -eq 1 ] && [[ ! "$image" =~ :[A-Za-z0-9_.-]+$ ]]; then
  die "--skip-build needs --image URI:TAG, the image (and its template) built earlier"
fi

# Machine types that carry gpu_count GPUs of gpu_type on Dataflow (Compute Engine's
# accelerator-optimized families have a fixed GPU count per machine type).
machines_for() {
  local n="$gpu_count"
  case "$gpu_type" in
    none) echo "n1-standard-8 any" ;;
    nvidia-tesla-t4|nvidia-tesla-p4|nvidia-tesla-p100)
      case "$n" in 1|2|4) echo "n1-standard-8 n1-*" ;; esac ;;
    nvidia-tesla-v100)
      case "$n" in 1|2|4|8) echo "n1-standard-8 n1-*" ;; esac ;;
    nvidia-l4)
      case "$n" in
        1) echo "g2-standard-8 g2-standard-4 g2-standard-12 g2-standard-16 g2-standard-32" ;;
        2) echo "g2-standard-24" ;; 4) echo "g2-standard-48" ;; 8) echo "g2-standard-96" ;;
      esac ;;
    nvidia-tesla-a100)
      case "$n" in 1|2|4|8) echo "a2-highgpu-${n}g" ;; 16) echo "a2-megagpu-16g" ;; esac ;;
    nvidia-a100-80gb)
      case "$n" in 1|2|4|8) echo "a2-ultragpu-${n}g" ;; esac ;;
    nvidia-h100-80gb)
      case "$n" in 1|2|4|8) echo "a3-highgpu-${n}g" ;; esac ;;
    nvidia-h100-mega-80gb)
      case "$n" in 8) echo "a3-megagpu-8g" ;; esac ;;
    *) die "unknown --gpu-type '$gpu_type' (see --help for the types Dataflow offers)" ;;
  esac
}
counts_for() {
  case "$gpu_type" in
    nvidia-tesla-t4|nvidia-tesla-p4|nvidia-tesla-p100) echo "1, 2 or 4" ;;
    nvidia-tesla-v100|nvidia-tesla-a100|nvidia-a100-80gb|nvidia-h100-80gb) echo "1, 2, 4 or 8 (16 for A100 40GB on a2-megagpu-16g)" ;;
    nvidia-l4) echo "1 (g2-standard-4..32), 2 (g2-standard-24), 4 (g2-standard-48) or 8 (g2-standard-96)" ;;
    nvidia-h100-mega-80gb) echo "8" ;;
  esac
}
valid_machines="$(machines_for)"
[ -n "$valid_machines" ] || die "--gpu-type $gpu_type cannot have --gpu-count $gpu_count: choose $(counts_for)"
if [ -z "$machine_type" ]; then
  machine_type="${valid_machines%% *}"
else
  ok=0
  for pattern in $valid_machines; do
    # shellcheck disable=SC2053 # the patterns are globs on purpose (n1-*)
    [ "$pattern" = any ] || [[ "$machine_type" == $pattern ]] && ok=1
  done
  valid="${valid_machines// /, }"
  [ "$ok" -eq 1 ] || die "--machine-type $machine_type cannot carry $gpu_count x $gpu_type; valid: ${valid//n1-\*/other n1 types}"
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

if [ -z "$image" ]; then
  commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null)" || die "not a git checkout: give --image URI:TAG"
  if [ -n "$(git -C "$root" status --porcelain -- glcm transforms pipeline setup.py Dockerfile 2>/dev/null)" ]; then
    commit="${commit}-dirty-$(date -u +%Y%m%d%H%M%S)"  # never reuse a clean commit's tag
  fi
  image="${region}-docker.pkg.dev/${project}/glcm/glcm-worker:${commit}"
fi
tag="${image##*:}"
# One template per image: a schedule keeps launching the image its template names.
template="${bucket}/templates/glcm-texture-${tag}.json"
# The GPU request is an experiment on the documented Flex Template route
# (--additional-experiments, REST environment.additionalExperiments).
experiments="use_runner_v2,no_use_multiple_sdk_containers"
accelerator=none
if [ "$gpu_type" != none ]; then
  experiments="${experiments},worker_accelerator=type:${gpu_type};count:${gpu_count};install-nvidia-driver"
  accelerator=required
fi
# Options of the Beam/Dataflow runner, passed like the pipeline's own parameters.
runner_names=(sdk_container_image disk_size_gb number_of_worker_harness_threads accelerator)
for name in "${runner_names[@]}" dataflow_service_options experiments; do
  [ -z "${params[$name]+x}" ] || die "--${name} is set by this script; use --image, --gpu-type/--gpu-count, --disk-size-gb or --harness-threads"
done
params[sdk_container_image]="$image"
params[disk_size_gb]="$disk_size_gb"
params[number_of_worker_harness_threads]="$harness_threads"
params[accelerator]="$accelerator"
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

if [ "$skip_build" -eq 1 ]; then
  echo "# the template built earlier for ${image}"
  if [ "$dry_run" -eq 1 ]; then
    run gcloud storage objects describe "$template" --project="$project"
  elif ! gcloud storage objects describe "$template" --project="$project" >/dev/null 2>&1; then
    die "no template $template for image tag ${tag}: build it first (run without --skip-build)"
  fi
else
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
  echo "# the Flex Template spec of this image"
  run gcloud dataflow flex-template build "$template" --project="$project" \
    --image="$image" --sdk-language=PYTHON \
    --metadata-file="$root/dataflow/metadata.json"
fi

if [ "$command_name" = run ]; then
  job_name="${job_name:-glcm-texture-$(date -u +%Y%m%d-%H%M%S)}"
  optional=()
  [ -z "$service_account" ] || optional+=(--service-account-email="$service_account")
  [ -z "$worker_zone" ] || optional+=(--worker-zone="$worker_zone")
  echo "# the job: ${machine_type} workers with ${gpu_count} x ${gpu_type}"
  run gcloud dataflow flex-template run "$job_name" --project="$project" \
    --region="$region" --template-file-gcs-location="$template" \
    --worker-machine-type="$machine_type" --max-workers="$max_workers" \
    --additional-experiments="$experiments" \
    --staging-location="${bucket}/staging" --temp-location="${bucket}/temp" \
    ${optional[@]+"${optional[@]}"} "${parameter_flags[@]}"
  exit 0
fi

# schedule: the Flex Template launch request, sent by Cloud Scheduler on the cron.
pairs=()
for name in "${names[@]}"; do pairs+=("$name" "${params[$name]}"); done
body="$(python3 - "$template" "$machine_type" "$max_workers" "$experiments" "$bucket" \
  "$service_account" "$worker_zone" "${pairs[@]}" <<'PY'
import json, sys
template, machine, workers, experiments, bucket, account, zone, *pairs = sys.argv[1:]
environment = {"machineType": machine, "maxWorkers": int(workers),
               "additionalExperiments": experiments.split(","),
               "stagingLocation": bucket + "/staging", "tempLocation": bucket + "/temp"}
if account:
    environment["serviceAccountEmail"] = account
if zone:
    environment["workerZone"] = zone
body = {"launchParameter": {
    "jobName": "glcm-texture",
    "containerSpecGcsPath": template,
    "parameters": dict(zip(pairs[::2], pairs[1::2])),
    "environment": environment}}
print(json.dumps(body, sort_keys=True))
PY
)"
uri="https://dataflow.googleapis.com/v1b3/projects/${project}/locations/${region}/flexTemplates:launch"
common=(--project="$project" --location="$region" --schedule="$cron"
        --time-zone="$time_zone" --uri="$uri" --http-method=POST
        --oauth-service-account-email="$scheduler_account"
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
