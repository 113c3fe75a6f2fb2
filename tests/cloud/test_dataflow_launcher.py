"""run_dataflow.sh dry runs, the Flex Template metadata and the Dockerfile, checked
against the pipeline's own option parser and setup.py's pins."""

import json
import os
import re
import shlex
import subprocess

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions,
                                                  PipelineOptions, WorkerOptions)

from pipeline.options import TextureOptions, params_from
from pipeline.run import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = ["--project", "my-proj", "--region", "europe-west4", "--bucket", "gs://my-bkt"]
RUNNER_PARAMS = {"sdk_container_image", "dataflow_service_options", "disk_size_gb",
                 "number_of_worker_harness_threads"}


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
    assert template == "gs://my-bkt/templates/glcm-texture.json"
    assert flag(cmds[2], "--image") == [image]
    assert flag(cmds[2], "--metadata-file") == [os.path.join(ROOT, "dataflow/metadata.json")]
    run = cmds[3]
    assert flag(run, "--template-file-gcs-location") == [template]
    assert flag(run, "--worker-machine-type") == ["g2-standard-8"]
    assert flag(run, "--max-workers") == ["25"]
    assert "use_runner_v2" in flag(run, "--additional-experiments")[0].split(",")
    params = parameters(run)
    assert params["sdk_container_image"] == image
    assert params["dataflow_service_options"] == (
        "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver")

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
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [
        params["dataflow_service_options"]]
    assert options.view_as(DebugOptions).experiments is None  # set by gcloud instead


def test_dry_run_schedule_creates_or_updates_the_scheduler_job():
    done = launcher("schedule", "--dry-run", "--cron", "0 3 * * *", "--time-zone",
                    "Europe/Paris", "--service-account", "sa@p.iam.gserviceaccount.com",
                    *BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1",
                    "--input", "@gs://my-bkt/lists/daily list.txt", "--levels", "64")
    cmds = commands(done.stdout)
    assert [c[:5] for c in cmds] == [["gcloud", "scheduler", "jobs", "describe",
                                      "glcm-texture"],
                                     ["gcloud", "scheduler", "jobs", "update", "http"],
                                     ["gcloud", "scheduler", "jobs", "create", "http"]]
    for cmd in cmds[1:]:
        assert flag(cmd, "--schedule") == ["0 3 * * *"]
        assert flag(cmd, "--time-zone") == ["Europe/Paris"]
        assert flag(cmd, "--uri") == ["https://dataflow.googleapis.com/v1b3/projects/"
                                      "my-proj/locations/europe-west4/flexTemplates:launch"]
        body = json.loads(flag(cmd, "--message-body")[0])["launchParameter"]
        assert body["containerSpecGcsPath"] == "gs://my-bkt/templates/glcm-texture.json"
        assert body["environment"]["machineType"] == "n1-standard-8"
        assert "use_runner_v2" in body["environment"]["additionalExperiments"]
        params = body["parameters"]
        assert params["sdk_container_image"] == "eu.gcr.io/p/w:1"
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
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in text
    assert "FROM tensorflow/tensorflow:${TENSORFLOW_VERSION}-gpu" in text
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in text
    assert "GLCM_TENSORFLOW=gpu pip install" in text
    assert f"assert tf.__version__ == '{tf}'" in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text


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
])
def test_launcher_rejects_bad_arguments(args, message):
    assert message in launcher(*args, expect=2).stderr


def test_launcher_quotes_hostile_names_and_help():
    hostile = "gs://b/in/$(touch /tmp/pwned) `id`; rm -rf ~ 'x'.tif"
    done = launcher("--dry-run", *BASE, "--skip-build", "--input", hostile)
    assert parameters(commands(done.stdout)[0])["input"] == hostile
    assert not os.path.exists("/tmp/pwned")
    assert "Usage:" in launcher("--help").stdout


def test_pipeline_on_dataflow_refuses_local_output(tmp_path, capsys):
    (tmp_path / "a.tif").write_bytes(b"")
    assert main([f"--input={tmp_path}/a.tif", f"--output={tmp_path}/out",
                 "--runner=DataflowRunner", "--project=p", "--region=r"]).exit_code == 2
    assert "Dataflow workers can only write to Cloud Storage" in capsys.readouterr().err
