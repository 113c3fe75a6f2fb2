"""run_dataflow.sh dry runs, the Flex Template metadata and the Dockerfile, checked
against the pipeline's own option parser and setup.py's pins."""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions,
                                                  PipelineOptions, WorkerOptions)

from pipeline.options import TextureOptions, params_from
from pipeline.run import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = ["--project", "my-proj", "--region", "europe-west4", "--bucket", "gs://my-bkt"]
RUNNER_PARAMS = {"sdk_container_image", "disk_size_gb", "number_of_worker_harness_threads",
                 "accelerator"}
L4 = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"


def launcher(*args, expect=0):
    done = subprocess.run([os.path.join(ROOT, "run_dataflow.sh"), *args], cwd="/",
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})  # no gcloud
    assert done.returncode == expect, done.stderr
    return done


def commands(stdout):
    """The printed commands, as argv lists."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def flag(argv, name):
    values = [a.split("=", 1)[1] for a in argv if a.startswith(name + "=")]
    values += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    return values


def parameters(argv):
    out = {}
    for value in flag(argv, "--parameters"):
        if value.startswith("^~^"):
            value = value[3:]
        else:
            assert "," not in value  # gcloud would split it
        key, _, val = value.partition("=")
        out[key] = val
    return out


def as_pipeline_argv(params):
    return [f"--{k}={v}" for k, v in params.items()]


def test_dry_run_launch_commands_are_accepted_by_the_pipeline():
    done = launcher("--dry-run", *BASE, "--gpu-type", "nvidia-l4", "--max-workers=25",
                    "--input", "gs://my-bkt/in/*.tif", "--features=contrast,ent,mean",
                    "--window", "9", "--angles", "-45,0", "--fail-on-error", "--force")
    cmds = commands(done.stdout)
    assert [c[:4] for c in cmds] == [
        ["gcloud", "artifacts", "repositories", "create"],
        ["gcloud", "builds", "submit", ROOT],
        ["gcloud", "dataflow", "flex-template", "build"],
        ["gcloud", "dataflow", "flex-template", "run"]]
    image = flag(cmds[1], "--tag")[0]
    assert re.fullmatch(r"europe-west4-docker\.pkg\.dev/my-proj/glcm/glcm-worker:\S+", image)
    assert os.path.exists(os.path.join(cmds[1][3], "Dockerfile"))
    template = cmds[2][4]
    # one template per image tag: a later build never changes what this one launches
    assert template == f"gs://my-bkt/templates/glcm-texture-{image.rsplit(':', 1)[1]}.json"
    assert flag(cmds[2], "--image") == [image]
    assert flag(cmds[2], "--metadata-file") == [os.path.join(ROOT, "dataflow/metadata.json")]
    run = cmds[3]
    assert flag(run, "--template-file-gcs-location") == [template]
    assert flag(run, "--worker-machine-type") == ["g2-standard-8"]
    assert flag(run, "--max-workers") == ["25"]
    experiments = flag(run, "--additional-experiments")[0].split(",")
    assert "use_runner_v2" in experiments and L4 in experiments  # the GPU request
    params = parameters(run)
    assert params["sdk_container_image"] == image
    assert params["accelerator"] == "required"
    assert "dataflow_service_options" not in params

    # the pipeline parses every parameter exactly as the template launcher passes it
    options = PipelineOptions(as_pipeline_argv(params))
    texture = params_from(options.view_as(TextureOptions))
    assert texture.features == ("contrast", "entropy", "mean")
    assert (texture.window, texture.angles_degrees) == (9, (-45.0, 0.0))
    o = options.view_as(TextureOptions)
    assert o.input == ["gs://my-bkt/in/*.tif"] and o.output == "gs://my-bkt/glcm-output"
    assert o.force is True and o.fail_on_error is True
    assert options.view_as(WorkerOptions).sdk_container_image == image
    assert options.view_as(WorkerOptions).disk_size_gb == 50
    assert options.view_as(DebugOptions).number_of_worker_harness_threads == 4
    assert o.accelerator == "required"
    assert options.view_as(GoogleCloudOptions).dataflow_service_options is None
    assert options.view_as(DebugOptions).experiments is None  # set by gcloud instead


def test_dry_run_schedule_creates_or_updates_the_scheduler_job():
    done = launcher("schedule", "--dry-run", "--cron", "0 3 * * *", "--time-zone",
                    "Europe/Paris", "--service-account", "sa@p.iam.gserviceaccount.com",
                    *BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1",
                    "--worker-zone", "europe-west4-c",
                    "--input", "@gs://my-bkt/lists/daily list.txt", "--levels", "64")
    cmds = commands(done.stdout)
    assert [c[:5] for c in cmds] == [["gcloud", "storage", "objects", "describe",
                                      "gs://my-bkt/templates/glcm-texture-1.json"],
                                     ["gcloud", "scheduler", "jobs", "describe",
                                      "glcm-texture"],
                                     ["gcloud", "scheduler", "jobs", "update", "http"],
                                     ["gcloud", "scheduler", "jobs", "create", "http"]]
    for cmd in cmds[2:]:
        assert flag(cmd, "--schedule") == ["0 3 * * *"]
        assert flag(cmd, "--time-zone") == ["Europe/Paris"]
        assert flag(cmd, "--uri") == ["https://dataflow.googleapis.com/v1b3/projects/"
                                      "my-proj/locations/europe-west4/flexTemplates:launch"]
        assert flag(cmd, "--oauth-service-account-email") == ["sa@p.iam.gserviceaccount.com"]
        body = json.loads(flag(cmd, "--message-body")[0])["launchParameter"]
        # the template and the image of one build, together
        assert body["containerSpecGcsPath"] == "gs://my-bkt/templates/glcm-texture-1.json"
        environment = body["environment"]
        assert environment["machineType"] == "n1-standard-8"
        assert "use_runner_v2" in environment["additionalExperiments"]
        assert ("worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
                in environment["additionalExperiments"])
        assert environment["serviceAccountEmail"] == "sa@p.iam.gserviceaccount.com"
        assert environment["workerZone"] == "europe-west4-c"
        params = body["parameters"]
        assert params["sdk_container_image"] == "eu.gcr.io/p/w:1"
        assert params["accelerator"] == "required"
        options = PipelineOptions(as_pipeline_argv(params))
        assert params_from(options).levels == 64
        assert options.view_as(TextureOptions).input == ["@gs://my-bkt/lists/daily list.txt"]


def test_flex_template_metadata_lists_the_pipeline_options():
    with open(os.path.join(ROOT, "dataflow", "metadata.json")) as f:
        metadata = json.load(f)
    names = [p["name"] for p in metadata["parameters"]]
    import argparse

    parser = argparse.ArgumentParser()
    TextureOptions._add_argparse_args(parser)
    dests = [a.dest for a in parser._actions if a.dest != "help"]
    assert sorted(names) == sorted(dests)
    # every default value is one the template's own validation accepts
    defaults = {a.dest: a.default for a in parser._actions}
    for p in metadata["parameters"]:
        assert p["isOptional"] == (p["name"] not in ("input", "output"))
        value = defaults[p["name"]]
        if p["isOptional"] and p.get("regexes") and value not in (None, False):
            assert all(re.match(r, str(value)) for r in p["regexes"]), p["name"]


def pins():
    with open(os.path.join(ROOT, "setup.py")) as f:
        text = f.read()
    tf = re.search(r'TENSORFLOW_VERSION = "([^"]+)"', text).group(1)
    beam = re.search(r'"apache-beam\[gcp\]==([^"]+)"', text).group(1)
    return tf, beam


def test_dockerfile_names_the_pinned_versions():
    tf, beam = pins()
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert args["TENSORFLOW_VERSION"] == tf and args["BEAM_VERSION"] == beam
    assert args["PYTHON_TAG"] == args["PYTHON_VERSION"].replace(".", "")
    # the Beam SDK image is the base: its harness and its Python, no second copy
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}\n" in text
    assert "tensorflow/tensorflow" not in text.split("# Versions")[1]  # cuDNN 8.9 images
    assert '"tensorflow[and-cuda]==${TENSORFLOW_VERSION}"' in text
    assert "GLCM_TENSORFLOW=gpu pip install" in text
    assert "python3 dataflow/check_gpu_image.py" in text
    # the launcher base image is pinned to a dated release, not :latest
    assert re.fullmatch(r"\d{8}_RC\d\d", args["LAUNCHER_TAG"])
    assert "-template-launcher-base:${LAUNCHER_TAG} AS launcher" in text
    assert not re.search(r"^FROM \S+:latest", text, re.M)
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
    # process settings belong to the image: the package sets none
    for setting in ("TF_CPU_ALLOCATOR_USE_BFC=false", "CPL_MACHINE_IS_GCE=YES",
                    "KERAS_BACKEND=tensorflow"):
        assert setting in text


@pytest.mark.parametrize("args, message", [
    (["--dry-run"], "--project is required"),
    (["--dry-run", *BASE], "--input is required"),
    (["--dry-run", *BASE[:4], "--bucket", "my-bkt", "--input", "gs://b/x.tif"],
     "--bucket must be gs://"),
    (["--dry-run", *BASE, "--input", "/local/x.tif"], "must be on Cloud Storage"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--output", "out"], "must be gs://"),
    (["--dry-run", *BASE, "--input", "gs://b/a.tif", "--input", "gs://b/b.tif"],
     "given twice"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--gpu-count", "0"],
     "--gpu-count must be"),
    (["schedule", "--dry-run", *BASE, "--input", "gs://b/x.tif"], "needs --cron"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "stray"], "unexpected argument"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--sdk_container_image", "x"],
     "is set by this script"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--dataflow_service_options", "x"],
     "is set by this script"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--accelerator", "none"],
     "is set by this script"),
    # fixed-count machine families: impossible pairs are refused with the valid ones
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--gpu-type", "nvidia-l4",
      "--gpu-count", "2", "--machine-type", "g2-standard-8"], "valid: g2-standard-24"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--gpu-type", "nvidia-l4",
      "--gpu-count", "3"], "cannot have --gpu-count 3: choose 1 (g2-standard-4..32)"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--gpu-type", "nvidia-h100-80gb",
      "--machine-type", "n1-standard-8"], "valid: a3-highgpu-1g"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--machine-type", "g2-standard-8"],
     "cannot carry 1 x nvidia-tesla-t4; valid: n1-standard-8, other n1 types"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--gpu-type", "nvidia-tesla-k9"],
     "unknown --gpu-type"),
    (["--dry-run", *BASE, "--input", "gs://b/x.tif", "--skip-build"],
     "--skip-build needs --image URI:TAG"),
    (["schedule", "--dry-run", *BASE, "--input", "gs://b/x.tif", "--cron", "0 3 * * *"],
     "schedule needs --service-account"),
])
def test_launcher_rejects_bad_arguments(args, message):
    assert message in launcher(*args, expect=2).stderr


@pytest.mark.parametrize("gpu, machine", [
    (["--gpu-type", "nvidia-l4", "--gpu-count", "2"], "g2-standard-24"),
    (["--gpu-type", "nvidia-tesla-a100", "--gpu-count", "4"], "a2-highgpu-4g"),
    (["--gpu-type", "nvidia-a100-80gb"], "a2-ultragpu-1g"),
    (["--gpu-type", "nvidia-h100-80gb", "--gpu-count", "8"], "a3-highgpu-8g"),
    (["--gpu-type", "nvidia-tesla-t4", "--gpu-count", "2", "--machine-type",
      "n1-highmem-16"], "n1-highmem-16"),
])
def test_launcher_chooses_a_machine_that_carries_the_gpus(gpu, machine):
    run = commands(launcher("--dry-run", *BASE, "--skip-build", "--image",
                            "eu.gcr.io/p/w:1", "--input", "gs://b/x.tif", *gpu).stdout)[-1]
    assert flag(run, "--worker-machine-type") == [machine]


def test_launcher_without_gpu_asks_for_none():
    run = commands(launcher("--dry-run", *BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1",
                            "--input", "gs://b/x.tif", "--gpu-type", "none").stdout)[-1]
    assert not any(e.startswith("worker_accelerator")
                   for e in flag(run, "--additional-experiments")[0].split(","))
    assert parameters(run)["accelerator"] == "none"
    assert flag(run, "--worker-machine-type") == ["n1-standard-8"]


def test_launcher_quotes_hostile_names_and_help():
    hostile = "gs://b/in/$(touch /tmp/pwned) `id`; rm -rf ~ 'x'.tif"
    done = launcher("--dry-run", *BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1",
                    "--input", hostile)
    assert parameters(commands(done.stdout)[-1])["input"] == hostile
    assert not os.path.exists("/tmp/pwned")
    assert "Usage:" in launcher("--help").stdout


def test_pipeline_on_dataflow_refuses_local_output(tmp_path, capsys):
    (tmp_path / "a.tif").write_bytes(b"")
    assert main([f"--input={tmp_path}/a.tif", f"--output={tmp_path}/out",
                 "--runner=DataflowRunner", "--project=p", "--region=r"]).exit_code == 2
    assert "Dataflow workers can only write to Cloud Storage" in capsys.readouterr().err


def load_image_check():
    spec = importlib.util.spec_from_file_location(
        "check_gpu_image", os.path.join(ROOT, "dataflow", "check_gpu_image.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GPU_BUILD = {"is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"}
PINNED = {"tensorflow": "2.21.0", "apache_beam": "2.77.0"}


@pytest.mark.parametrize("build, installed, present, found", [
    # tensorflow[and-cuda]: CUDA 12.x runtime (minor at least the build's), cuDNN 9
    (GPU_BUILD, {"nvidia-cuda-runtime-cu12": "12.9.79", "nvidia-cudnn-cu12": "9.10.2.21"},
     True, []),
    # the TensorFlow GPU image's system libraries: cuDNN 8.9 for a cuDNN 9 build
    (GPU_BUILD, {"nvidia-cuda-runtime-cu12": "12.5.82", "nvidia-cudnn-cu12": "8.9.7.29"},
     True, ["nvidia-cudnn-cu12 8.9.7.29 does not serve TensorFlow's cudnn_version 9"]),
    (GPU_BUILD, {"nvidia-cuda-runtime-cu12": "12.3.101", "nvidia-cudnn-cu12": "9.3.0.75"},
     True, ["nvidia-cuda-runtime-cu12 12.3.101 does not serve TensorFlow's cuda_version"]),
    (GPU_BUILD, {"nvidia-cuda-runtime-cu12": None, "nvidia-cudnn-cu12": "9.3.0.75"},
     True, ["nvidia-cuda-runtime-cu12 is not installed"]),
    (GPU_BUILD, {"nvidia-cuda-runtime-cu12": "12.5.82", "nvidia-cudnn-cu12": "9.3.0.75"},
     False, ["nvidia/cuda_runtime/lib/libcudart.so.12 is missing",
             "nvidia/cudnn/lib/libcudnn.so.9 is missing"]),
    ({"is_cuda_build": False}, {}, True, ["not a CUDA build"]),
])
def test_gpu_image_check_compares_tensorflow_build_with_the_libraries(
        build, installed, present, found):
    check = load_image_check()
    versions = dict(PINNED, python="3.11")
    problems = check.problems(build, installed, lambda path: present, versions, PINNED)
    assert len(problems) == len(found), problems
    for problem, words in zip(problems, found):
        assert words in problem
    # a version other than the pins is named too
    wrong = check.problems(build, installed, lambda path: present,
                           dict(versions, tensorflow="2.20.0"), PINNED)
    assert wrong[0] == "tensorflow is 2.20.0, the image pins 2.21.0"


def test_gpu_image_check_fails_on_this_cpu_only_tensorflow():
    # the real script on the real (CPU-only) TensorFlow of this environment
    tf, beam = pins()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "dataflow",
                                                        "check_gpu_image.py"),
                           "--tensorflow", tf, "--beam", beam],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1
    assert "not a CUDA build" in done.stderr
