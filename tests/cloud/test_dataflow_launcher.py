"""The Dataflow launcher (pipeline/launch.py): its plans, checked against the
pipeline's own option parser; the Flex Template metadata, the Cloud Build recipe, the
Dockerfile and the image lock, checked against setup.py's pins; the image's GPU check.

Tests call the planner; one test runs the thin shell entry."""

import argparse
import datetime
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions,
                                                  PipelineOptions, WorkerOptions)

from pipeline import launch
from pipeline.launch import LaunchError, StepFailed, execute, plan
from pipeline.options import TextureOptions, params_from, tile_accelerator_hint
from pipeline.run import main
from transforms.records import COMPRESSIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = ["--project", "my-proj", "--region", "europe-west4", "--bucket", "gs://my-bkt"]
INPUT = ["--input", "gs://my-bkt/in/*.tif"]
L4 = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
NOW = datetime.datetime(2026, 12, 1, 3, 0, 0)
DIGEST = "sha256:" + "ab" * 32


def make(*args, **kwargs):
    kwargs.setdefault("commit", "0123abcd4567")
    return plan(list(args), now=NOW, **kwargs)


def step(launch_plan, name):
    [found] = [s for s in launch_plan.steps if s.name == name]
    return found


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


def test_plan_builds_from_the_newest_launcher_release_and_launches_by_digest():
    p = make(*BASE, "--gpu-type", "nvidia-l4", "--max-workers=25", *INPUT,
             "--features=contrast,ent,mean", "--window", "9", "--angles", "-45,0",
             "--fail-on-error", "--force")
    assert [s.name for s in p.steps] == ["repository", "launcher-base", "image", "digest",
                                         "template", "job"]
    # the repository is created only when its describe fails
    repo = step(p, "repository")
    assert repo.probe[:4] == ("gcloud", "artifacts", "repositories", "describe")
    assert repo.when == "probe_fails"
    # the launcher base: listed, the newest release chosen, passed by digest
    base = step(p, "launcher-base")
    assert base.argv[:4] == ("gcloud", "container", "images", "list-tags")
    assert base.argv[4] == "gcr.io/dataflow-templates-base/python311-template-launcher-base"
    image = p.image
    assert re.fullmatch(r"europe-west4-docker\.pkg\.dev/my-proj/glcm/glcm-worker:"
                        r"0123abcd4567", image)
    build = step(p, "image").argv
    assert build[:4] == ("gcloud", "builds", "submit", ROOT)
    assert flag(build, "--config") == [os.path.join(ROOT, "dataflow", "cloudbuild.yaml")]
    assert flag(build, "--substitutions") == [
        f"_IMAGE={image},_LAUNCHER_IMAGE=${{LAUNCHER_IMAGE}}"]
    # the template and the job name the image by digest, never by its tag
    template = step(p, "template").argv
    assert template[4] == p.template == ("gs://my-bkt/templates/glcm-texture-0123abcd4567-"
                                         "${WORKER_DIGEST}.json")
    assert flag(template, "--image") == ["${WORKER_IMAGE}"]
    run = step(p, "job").argv
    assert run[:5] == ("gcloud", "dataflow", "flex-template", "run",
                       "glcm-texture-20261201-030000")
    assert flag(run, "--template-file-gcs-location") == [p.template]
    assert flag(run, "--worker-machine-type") == ["g2-standard-8"]
    assert flag(run, "--max-workers") == ["25"]
    assert flag(run, "--launcher-machine-type") == ["n1-standard-4"]
    experiments = flag(run, "--additional-experiments")[0].split(",")
    assert experiments == ["use_runner_v2", "no_use_multiple_sdk_containers", L4]
    params = parameters(run)
    assert params["sdk_container_image"] == "${WORKER_IMAGE}"
    assert params["accelerator"] == "required"
    assert params["tiles_per_call"] == "4"  # a GPU computes several tiles at once faster
    assert params["disk_size_gb"] == "100"  # holds the image and concurrent mosaics

    # the pipeline parses every parameter exactly as the template launcher passes it
    options = PipelineOptions(as_pipeline_argv(params))
    texture = params_from(options)
    assert texture.features == ("contrast", "entropy", "mean")
    assert (texture.window, texture.angles_degrees) == (9, (-45.0, 0.0))
    o = options.view_as(TextureOptions)
    assert o.input == ["gs://my-bkt/in/*.tif"] and o.output == "gs://my-bkt/glcm-output"
    assert o.force is True and o.fail_on_error is True and o.accelerator == "required"
    assert o.tiles_per_call == 4
    assert options.view_as(WorkerOptions).disk_size_gb == 100
    assert options.view_as(DebugOptions).number_of_worker_harness_threads == 4
    assert options.view_as(GoogleCloudOptions).dataflow_service_options is None
    assert options.view_as(DebugOptions).experiments is None  # set by gcloud instead


def test_plan_prints_every_command_and_what_fills_the_placeholders():
    text = make(*BASE, *INPUT).describe()
    assert "+ gcloud builds submit" in text
    assert "? gcloud artifacts repositories describe glcm" in text
    assert "(sets ${LAUNCHER_IMAGE})" in text and "(sets ${WORKER_IMAGE}, ${WORKER_DIGEST})" in text


def test_a_model_on_cloud_storage_is_passed_to_the_job_unread():
    """The launcher checks the model's flags but does not read the file (the job
    reads it at launch, with its own credentials, and refuses a bad one there)."""
    p = make(*BASE, *INPUT, "--model", "gs://my-bkt/models/cover.keras", "--classes",
             "water,forest,urban", "--model-halo", "9")
    params = parameters(step(p, "job").argv)
    assert (params["model"], params["classes"], params["model_halo"]) == (
        "gs://my-bkt/models/cover.keras", "water,forest,urban", "9")


def test_polygons_on_cloud_storage_are_passed_to_the_job_unread():
    """Objects mode: the launcher checks the flags that go together, not the file (the
    job reads and checks the polygons at launch)."""
    p = make(*BASE, *INPUT, "--mode", "objects", "--objects", "gs://my-bkt/v/parcels.gpkg",
             "--object-id", "parcel")
    params = parameters(step(p, "job").argv)
    assert (params["mode"], params["objects"], params["object_id"]) == (
        "objects", "gs://my-bkt/v/parcels.gpkg", "parcel")
    with pytest.raises(LaunchError, match="--objects must be on Cloud Storage"):
        make(*BASE, *INPUT, "--mode", "objects", "--objects", "parcels.gpkg",
             "--object-id", "parcel")
    with pytest.raises(LaunchError, match="--object-id: name the field"):
        make(*BASE, *INPUT, "--mode", "objects", "--objects", "gs://my-bkt/v/parcels.gpkg")
    with pytest.raises(LaunchError, match="--objects: mode objects computes"):
        make(*BASE, *INPUT, "--mode", "objects")


def test_dirty_checkout_gets_its_own_tag():
    p = make(*BASE, *INPUT, dirty=True)
    assert p.image.endswith(":0123abcd4567-dirty-20261201030000")
    with pytest.raises(LaunchError, match="not a git checkout"):
        plan(BASE + INPUT, commit=None)


def test_launcher_tag_picks_a_release_by_name():
    p = make(*BASE, *INPUT, "--launcher-tag", "20251030-rc00")
    assert "release 20251030-rc00" in step(p, "launcher-base").purpose
    with pytest.raises(LaunchError, match="not a release tag"):
        make(*BASE, *INPUT, "--launcher-tag", "latest")


LISTING = json.dumps([
    {"digest": "sha256:" + "1" * 64, "tags": ["latest", "public-image-latest"]},
    {"digest": "sha256:" + "2" * 64, "tags": ["20251030-rc00"]},
    {"digest": "sha256:" + "3" * 64, "tags": ["flex_templates_base_image_release_20260112_RC00"]},
    {"digest": "sha256:" + "4" * 64, "tags": ["20230622_RC00"]},
    {"digest": "sha256:" + "5" * 64, "tags": ["flex_templates_base_image_release_20260112_RC01"]},
])


def test_choose_launcher_image_takes_the_newest_release_or_the_one_named():
    repo = "gcr.io/dataflow-templates-base/python311-template-launcher-base"
    assert launch.choose_launcher_image(repo, LISTING) == f"{repo}@sha256:" + "5" * 64
    assert (launch.choose_launcher_image(repo, LISTING, "20251030-rc00")
            == f"{repo}@sha256:" + "2" * 64)
    with pytest.raises(StepFailed, match="no release tagged '20260122_RC00'; the newest: "
                                         "flex_templates_base_image_release_20260112_RC01"):
        launch.choose_launcher_image(repo, LISTING, "20260122_RC00")
    with pytest.raises(StepFailed, match="no release tag"):
        launch.choose_launcher_image(repo, json.dumps([{"digest": "sha256:1",
                                                        "tags": ["latest"]}]))


def test_execute_fills_values_from_earlier_steps_and_names_a_failed_step():
    """The plan run step by step, with a stand-in for gcloud (no account here)."""
    calls = []

    def gcloud(argv, capture):
        calls.append(list(argv))
        out = ""
        if "list-tags" in argv:
            out = LISTING
        elif argv[1:5] == ["artifacts", "docker", "images", "describe"]:
            out = DIGEST + "\n"
        code = 1 if argv[1:4] == ["artifacts", "repositories", "describe"] else 0
        return subprocess.CompletedProcess(argv, code, stdout=out, stderr="")

    p = make(*BASE, *INPUT)
    values = execute(p, run=gcloud, say=lambda line: None)
    assert values["WORKER_IMAGE"] == ("europe-west4-docker.pkg.dev/my-proj/glcm/"
                                      "glcm-worker@" + DIGEST)
    assert values["WORKER_DIGEST"] == "ab" * 6
    executed = {tuple(c[1:3]): c for c in calls}
    assert ("artifacts", "repositories") in executed  # describe failed: create ran
    assert [c for c in calls if c[1:4] == ["artifacts", "repositories", "create"]]
    build = executed[("builds", "submit")]
    assert flag(build, "--substitutions")[0].endswith(
        "_LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python311-template-launcher-base"
        "@sha256:" + "5" * 64)
    template = executed[("dataflow", "flex-template")]
    run = calls[-1]
    assert flag(run, "--template-file-gcs-location") == [
        f"gs://my-bkt/templates/glcm-texture-0123abcd4567-{'ab' * 6}.json"]
    assert parameters(run)["sdk_container_image"] == values["WORKER_IMAGE"]
    assert template  # built before the job

    def failing_build(argv, capture):
        if argv[1] == "builds":
            return subprocess.CompletedProcess(argv, 1, stdout="", stderr="denied: quota")
        return gcloud(argv, capture)

    with pytest.raises(StepFailed, match=r"step 'image' \(the worker image.*exit status "
                                         r"1:\ndenied: quota"):
        execute(p, run=failing_build, say=lambda line: None)


def test_schedule_posts_the_launch_request_built_in_python():
    p = make("schedule", "--cron", "0 3 * * *", "--time-zone", "Europe/Paris",
             "--service-account", "sa@p.iam.gserviceaccount.com", *BASE, "--skip-build",
             "--image", "eu.gcr.io/p/w:1", "--worker-zone", "europe-west4-c",
             "--input", "@gs://my-bkt/lists/daily list.txt", "--levels", "64")
    assert [s.name for s in p.steps] == ["digest", "template-exists", "schedule-update",
                                         "schedule-create"]
    assert step(p, "template-exists").argv[:5] == (
        "gcloud", "storage", "objects", "describe",
        "gs://my-bkt/templates/glcm-texture-1-${WORKER_DIGEST}.json")
    update, create = step(p, "schedule-update"), step(p, "schedule-create")
    assert (update.when, create.when) == ("probe_succeeds", "probe_fails")
    for s in (update, create):
        assert flag(s.argv, "--schedule") == ["0 3 * * *"]
        assert flag(s.argv, "--time-zone") == ["Europe/Paris"]
        assert flag(s.argv, "--uri") == ["https://dataflow.googleapis.com/v1b3/projects/"
                                         "my-proj/locations/europe-west4/flexTemplates:launch"]
        assert flag(s.argv, "--oauth-service-account-email") == [
            "sa@p.iam.gserviceaccount.com"]
        assert json.loads(flag(s.argv, "--message-body")[0]) == p.scheduler_body
    body = p.scheduler_body["launchParameter"]
    assert body["jobName"] == "glcm-texture"
    assert body["containerSpecGcsPath"] == p.template
    environment = body["environment"]
    assert environment["machineType"] == "n1-standard-8"
    assert environment["launcherMachineType"] == "n1-standard-4"
    assert "no_use_multiple_sdk_containers" in environment["additionalExperiments"]
    assert ("worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
            in environment["additionalExperiments"])
    assert environment["serviceAccountEmail"] == "sa@p.iam.gserviceaccount.com"
    assert environment["workerZone"] == "europe-west4-c"
    params = body["parameters"]
    assert params["sdk_container_image"] == "${WORKER_IMAGE}"
    options = PipelineOptions(as_pipeline_argv(params))
    assert params_from(options).levels == 64
    assert options.view_as(TextureOptions).input == ["@gs://my-bkt/lists/daily list.txt"]


def test_an_image_given_by_digest_needs_no_lookup():
    image = "eu.gcr.io/p/w@" + DIGEST
    p = make(*BASE, *INPUT, "--skip-build", "--image", image)
    assert [s.name for s in p.steps] == ["template-exists", "job"]
    assert parameters(step(p, "job").argv)["sdk_container_image"] == image


@pytest.mark.parametrize("args, message", [
    ([], "--project is required"),
    (BASE, "--input is required"),
    (["--project", "123456", *BASE[2:], *INPUT], "is not a project id"),
    ([*BASE[:4], "--bucket", "my-bkt", *INPUT], "--bucket must be gs://"),
    ([*BASE, "--input", "/local/x.tif"], "must be on Cloud Storage"),
    ([*BASE, *INPUT, "--output", "out"], "must be gs://"),
    ([*BASE, "--input", "gs://b/a.tif", "--input", "gs://b/b.tif"], "given twice"),
    ([*BASE, *INPUT, "--gpu-count", "0"], "--gpu-count must be a positive integer"),
    (["schedule", *BASE, *INPUT], "needs --cron"),
    (["schedule", *BASE, *INPUT, "--cron", "0 3 * *"], "must have 5 fields"),
    ([*BASE, *INPUT, "stray"], "unexpected argument 'stray'"),
    # a typo is refused by name before any build, with the closest flag
    ([*BASE, *INPUT, "--max-worker", "5"], "unknown flag --max-worker; did you mean "
                                           "--max-workers?"),
    ([*BASE, *INPUT, "--featurs", "contrast"], "did you mean --features?"),
    # pipeline flags are checked by the pipeline's own rules (glcm.validation)
    ([*BASE, *INPUT, "--window", "8"], "--window: window must be an odd integer"),
    ([*BASE, *INPUT, "--levels", "1"], "--levels: levels must be >= 2"),
    ([*BASE, *INPUT, "--features", "contrast,bogus"], "unknown GLCM feature 'bogus'"),
    ([*BASE, *INPUT, "--sdk_container_image", "x"], "set by the launcher; use --image"),
    ([*BASE, *INPUT, "--dataflow_service_options", "x"], "set by the launcher"),
    ([*BASE, *INPUT, "--accelerator", "none"], "use --gpu-type instead"),
    ([*BASE, *INPUT, "--disk-size-gb", "30"], "--disk-size-gb 30 is too small"),
    ([*BASE, *INPUT, "--job-name", "My_Job"], "Dataflow job names are lower-case"),
    # machine families with a fixed GPU count: impossible pairs refused with the choices
    ([*BASE, *INPUT, "--gpu-type", "nvidia-l4", "--gpu-count", "2", "--machine-type",
      "g2-standard-8"], "valid: g2-standard-24"),
    ([*BASE, *INPUT, "--gpu-type", "nvidia-l4", "--gpu-count", "3"],
     "cannot have --gpu-count 3: choose 1 (g2-standard-8/g2-standard-4"),
    ([*BASE, *INPUT, "--gpu-type", "nvidia-h100-80gb", "--gpu-count", "8",
      "--machine-type", "n1-standard-8"], "valid: a3-highgpu-8g"),
    ([*BASE, *INPUT, "--machine-type", "g2-standard-8"],
     "cannot carry 1 x nvidia-tesla-t4; valid: n1-standard-8, other n1 types"),
    ([*BASE, *INPUT, "--gpu-type", "nvidia-tesla-k9"], "unknown --gpu-type"),
    ([*BASE, *INPUT, "--skip-build"], "--skip-build needs --image"),
    ([*BASE, *INPUT, "--skip-build", "--image", "eu.gcr.io/p/w"], "needs a tag"),
    (["schedule", *BASE, *INPUT, "--cron", "0 3 * * *"], "schedule needs --service-account"),
    # a model: on Cloud Storage, classes only with it, a halo >= 0
    ([*BASE, *INPUT, "--model", "/local/m.keras"], "--model must be on Cloud Storage"),
    ([*BASE, *INPUT, "--classes", "a,b"], "--classes: classes name the outputs of a model"),
    ([*BASE, *INPUT, "--model", "gs://my-bkt/m.keras", "--model-halo", "-1"],
     "--model-halo: the halo must be >= 0"),
    ([*BASE, *INPUT, "--model", "gs://my-bkt/m.keras", "--mode", "block"],
     "--mode: a model maps every pixel"),
])
def test_launcher_refuses_bad_arguments_before_anything_runs(args, message):
    with pytest.raises(LaunchError) as refused:
        make(*args)
    assert message in str(refused.value)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_h100_shapes_that_are_not_offered_on_demand_are_refused(count):
    with pytest.raises(LaunchError, match=f"a3-highgpu-{count}g, which Compute Engine "
                                          f"offers only as Spot or Flex-start"):
        make(*BASE, *INPUT, "--gpu-type", "nvidia-h100-80gb", "--gpu-count", str(count))


def test_every_default_machine_is_offered_on_demand():
    for gpu, shapes in launch.GPU_MACHINES.items():
        for count, machines in shapes.items():
            assert (gpu, count) not in launch.NOT_ON_DEMAND
            assert machines[0] not in launch.NOT_ON_DEMAND.values()
            assert launch.machine_for(gpu, count, None) == machines[0]


@pytest.mark.parametrize("gpu, machine", [
    (["--gpu-type", "nvidia-l4", "--gpu-count", "2"], "g2-standard-24"),
    (["--gpu-type", "nvidia-tesla-a100", "--gpu-count", "4"], "a2-highgpu-4g"),
    (["--gpu-type", "nvidia-a100-80gb"], "a2-ultragpu-1g"),
    (["--gpu-type", "nvidia-h100-80gb", "--gpu-count", "8"], "a3-highgpu-8g"),
    (["--gpu-type", "nvidia-tesla-t4", "--gpu-count", "2", "--machine-type",
      "n1-highmem-16"], "n1-highmem-16"),
])
def test_launcher_chooses_a_machine_that_carries_the_gpus(gpu, machine):
    p = make(*BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1", *INPUT, *gpu)
    assert flag(step(p, "job").argv, "--worker-machine-type") == [machine]


def test_launcher_without_gpu_asks_for_none():
    run = step(make(*BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1", *INPUT,
                    "--gpu-type", "none"), "job").argv
    assert not any(e.startswith("worker_accelerator")
                   for e in flag(run, "--additional-experiments")[0].split(","))
    assert parameters(run)["accelerator"] == "none"
    assert "tiles_per_call" not in parameters(run)  # one tile per call on a CPU
    assert flag(run, "--worker-machine-type") == ["n1-standard-8"]


def test_tiles_per_call_given_is_kept_and_checked():
    argv = (*BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1", *INPUT)
    run = step(make(*argv, "--tiles-per-call", "2"), "job").argv
    assert parameters(run)["tiles_per_call"] == "2"
    with pytest.raises(LaunchError, match="--tiles-per-call: give at least 1 tile"):
        make(*argv, "--tiles-per-call", "0")


def test_mosaic_machine_type_puts_the_gpus_on_the_tile_steps_only():
    p = make(*BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1", *INPUT,
             "--gpu-type", "nvidia-l4", "--mosaic-machine-type", "n2-standard-8")
    run = step(p, "job").argv
    # the job's own workers are the CPU ones; no GPU on every worker
    assert flag(run, "--worker-machine-type") == ["n2-standard-8"]
    experiments = flag(run, "--additional-experiments")[0].split(",")
    assert experiments == ["use_runner_v2", "no_use_multiple_sdk_containers"]
    params = parameters(run)
    assert params["tile_accelerator"] == (
        "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8")
    assert params["accelerator"] == "required"  # checked where the model runs
    assert "g2-standard-8 workers with 1 x nvidia-l4 for the tiles" in step(p, "job").purpose
    # the pipeline takes the hint as the template launcher passes it, and the
    # template's own validation accepts it
    options = PipelineOptions(as_pipeline_argv(params))
    assert tile_accelerator_hint(options) == params["tile_accelerator"]
    with open(os.path.join(ROOT, "dataflow", "metadata.json")) as f:
        [regexes] = [m["regexes"] for m in json.load(f)["parameters"]
                     if m["name"] == "tile_accelerator"]
    assert all(re.match(r, params["tile_accelerator"]) for r in regexes)
    # a schedule launches the same split
    body = make("schedule", "--cron", "0 3 * * *", "--service-account",
                "sa@p.iam.gserviceaccount.com", *BASE, "--skip-build", "--image",
                "eu.gcr.io/p/w:1", *INPUT, "--gpu-type", "nvidia-tesla-t4", "--gpu-count",
                "2", "--mosaic-machine-type", "n2-highmem-4").scheduler_body
    environment = body["launchParameter"]["environment"]
    assert environment["machineType"] == "n2-highmem-4"
    assert not any(e.startswith("worker_accelerator")
                   for e in environment["additionalExperiments"])
    assert body["launchParameter"]["parameters"]["tile_accelerator"] == (
        "type:nvidia-tesla-t4;count:2;install-nvidia-driver;machine_type:n1-standard-8")


@pytest.mark.parametrize("args, message", [
    (["--gpu-type", "none", "--mosaic-machine-type", "n2-standard-8"],
     "give a --gpu-type too"),
    (["--gpu-type", "nvidia-l4", "--mosaic-machine-type", "g2-standard-4"],
     "comes with GPUs attached"),
    (["--mosaic-machine-type", "N2 standard"], "is not a machine type name"),
    (["--tile-accelerator", "type:nvidia-l4;count:1"], "use --mosaic-machine-type"),
])
def test_mosaic_machine_type_refused_when_it_cannot_work(args, message):
    with pytest.raises(LaunchError) as refused:
        make(*BASE, *INPUT, *args)
    assert message in str(refused.value)


def test_hostile_names_stay_one_argument():
    hostile = "gs://b/in/$(touch /tmp/pwned) `id`; rm -rf ~ 'x'.tif"
    run = step(make(*BASE, "--skip-build", "--image", "eu.gcr.io/p/w:1",
                    "--input", hostile), "job").argv
    assert parameters(run)["input"] == hostile


def test_the_shell_entry_runs_the_python_launcher():
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no gcloud
    done = subprocess.run([os.path.join(ROOT, "run_dataflow.sh"), "--dry-run", *BASE,
                           *INPUT, "--window", "9"], cwd="/", capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "+ gcloud dataflow flex-template run" in done.stdout
    bad = subprocess.run([os.path.join(ROOT, "run_dataflow.sh"), "--dry-run", *BASE,
                          *INPUT, "--max-worker", "5"], cwd="/", capture_output=True,
                         text=True, timeout=120, env=env)
    assert bad.returncode == 2
    assert "unknown flag --max-worker; did you mean --max-workers?" in bad.stderr


def test_help_lists_the_launcher_options_then_the_pipeline_flags(capsys):
    assert launch.main(["--dry-run", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.index("Launcher options:") < out.index("Pipeline flags")
    assert "--mosaic-machine-type" in out and "--tile-accelerator" in out


def test_pipeline_on_dataflow_refuses_local_output(tmp_path, capsys):
    (tmp_path / "a.tif").write_bytes(b"")
    assert main([f"--input={tmp_path}/a.tif", f"--output={tmp_path}/out",
                 "--runner=DataflowRunner", "--project=p", "--region=r"]).exit_code == 2
    assert "Dataflow workers can only write to Cloud Storage" in capsys.readouterr().err


def test_flex_template_metadata_lists_the_pipeline_options():
    with open(os.path.join(ROOT, "dataflow", "metadata.json")) as f:
        metadata = json.load(f)
    names = [p["name"] for p in metadata["parameters"]]
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
    # every codec the pipeline takes, the template takes too
    [codecs] = [p["regexes"] for p in metadata["parameters"] if p["name"] == "cog_compression"]
    assert all(re.match(r, c) for c in COMPRESSIONS for r in codecs)


def pins():
    with open(os.path.join(ROOT, "setup.py")) as f:
        text = f.read()
    tf = re.search(r'TENSORFLOW_VERSION = "([^"]+)"', text).group(1)
    beam = re.search(r'"apache-beam\[gcp\]==([^"]+)"', text).group(1)
    others = dict(re.findall(r'"(keras|numpy|rasterio|google-cloud-storage)==([^"]+)"', text))
    return tf, beam, others


def dockerfile():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        return f.read()


def test_dockerfile_names_the_pinned_versions():
    tf, beam, _ = pins()
    text = dockerfile()
    args = launch.dockerfile_args(ROOT)
    assert args["TENSORFLOW_VERSION"] == tf and args["BEAM_VERSION"] == beam
    assert args["PYTHON_TAG"] == args["PYTHON_VERSION"].replace(".", "")
    # the Beam SDK image is the base: its harness and its Python, no second copy
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}\n" in text
    assert "tensorflow/tensorflow" not in text.split("# Versions")[1]  # cuDNN 8.9 images
    assert '"tensorflow[and-cuda]==${TENSORFLOW_VERSION}"' in text
    assert "GLCM_TENSORFLOW=gpu pip install" in text
    assert "python3 dataflow/check_gpu_image.py" in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
    # process settings belong to the image: the package sets none
    for setting in ("TF_CPU_ALLOCATOR_USE_BFC=true", "CPL_MACHINE_IS_GCE=YES",
                    "KERAS_BACKEND=tensorflow"):
        assert setting in text


def test_dockerfile_launcher_base_is_a_build_argument_with_a_current_release_tag():
    text = dockerfile()
    assert "FROM ${LAUNCHER_IMAGE} AS launcher" in text
    default = launch.dockerfile_args(ROOT)["LAUNCHER_IMAGE"]
    repository, tag = default.rsplit(":", 1)
    assert repository == "gcr.io/dataflow-templates-base/python${PYTHON_TAG}-template-launcher-base"
    # the form Google's current samples use; not :latest, not 2023's bare YYYYMMDD_RC00
    assert re.fullmatch(r"flex_templates_base_image_release_\d{8}_RC\d\d", tag)
    assert not re.search(r"^FROM \S+:latest", text, re.M)
    with open(os.path.join(ROOT, "dataflow", "cloudbuild.yaml")) as f:
        recipe = f.read()
    assert '"--build-arg", "LAUNCHER_IMAGE=${_LAUNCHER_IMAGE}"' in recipe
    assert '"-t", "${_IMAGE}"' in recipe and 'images: ["${_IMAGE}"]' in recipe


def image_environment():
    """The environment the Dockerfile's ENV lines give a container of the image, the
    base image's PATH standing for the one Docker starts from."""
    text = dockerfile().replace("\\\n", " ")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", line):
            value = re.sub(r"\$\{(\w+):\+:\$\{\w+\}\}",
                           lambda m: ":" + env[m.group(1)] if env.get(m.group(1)) else "",
                           value)
            env[name] = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), value)
    return env


def test_image_puts_the_driver_dataflow_mounts_on_the_loader_path():
    check = load_image_check()
    env = image_environment()
    assert check.loader_path_problems(env) == []
    assert env["LD_LIBRARY_PATH"].split(":")[0] == "/usr/local/nvidia/lib64"
    assert env["PATH"].startswith("/usr/local/nvidia/bin:/usr/local/bin")
    # the check runs in the build after the ENV line, and fails without it
    text = dockerfile()
    assert text.index("ENV LD_LIBRARY_PATH=") < text.index("check_gpu_image.py --tensorflow")
    problems = check.loader_path_problems({"PATH": "/usr/bin", "LD_LIBRARY_PATH": ""})
    assert [p.split(" lacks ")[0] for p in problems] == ["LD_LIBRARY_PATH", "PATH"]


def test_image_installs_from_the_lock_and_checks_it():
    tf, beam, others = pins()
    text = dockerfile()
    assert "-c dataflow/image-constraints.txt" in text
    assert "dataflow/image-constraints.txt ./dataflow/" in text
    assert "&& pip check" in text
    with open(os.path.join(ROOT, "dataflow", "image-constraints.txt")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    locked = dict(line.split("==") for line in lines)
    assert len(locked) == len(lines)  # every line an exact pin
    assert locked["tensorflow"] == tf and locked["apache-beam"] == beam
    for name, version in others.items():
        assert locked[name] == version, name
    # the CUDA and cuDNN wheels TensorFlow loads are pinned too
    for wheel in ("nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"):
        assert wheel in locked
    assert "glcm-texture" not in locked


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
    # the real script on the real (CPU-only) TensorFlow of this environment, whose
    # environment lacks the driver folders too
    tf, beam, _ = pins()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "dataflow",
                                                        "check_gpu_image.py"),
                           "--tensorflow", tf, "--beam", beam],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                               "LD_LIBRARY_PATH": ""})
    assert done.returncode == 1
    assert "not a CUDA build" in done.stderr
    assert "LD_LIBRARY_PATH lacks /usr/local/nvidia/lib64" in done.stderr


def test_the_machine_table_of_the_docs_is_the_launchers():
    with open(os.path.join(ROOT, "docs", "cloud.md")) as f:
        text = f.read()
    section = text.split("### Machine types", 1)[1].split("\n### ", 1)[0]
    documented = {}
    for row in re.findall(r"^\| (`nvidia[^|]+) \| ([^|]+) \| ([^|]+) \|", section, re.M):
        gpus = re.findall(r"`([^`]+)`", row[0])
        counts = [int(c) for c in re.findall(r"\d+", row[1])]
        defaults = re.findall(r"`([^`]+)`", row[2])
        if len(defaults) == 1:
            defaults = defaults * len(counts)
        for gpu in gpus:
            for count, machine in zip(counts, defaults, strict=True):
                documented[gpu, count] = machine
    table = {(gpu, count): machines[0] for gpu, shapes in launch.GPU_MACHINES.items()
             for count, machines in shapes.items()}
    assert documented == table


def test_every_default_is_declared_once():
    """The flags' defaults are transforms.records.DEFAULTS (whose texture part is
    glcm.TextureSpec's); the Flex Template metadata and the README's flags table say
    the same."""
    import glcm
    from glcm.spec import spec_defaults
    from transforms.records import DEFAULTS, TextureParams

    parser = argparse.ArgumentParser()
    TextureOptions._add_argparse_args(parser)
    defaults = {a.dest: a.default for a in parser._actions}
    assert TextureParams.create() == params_from(PipelineOptions([]))
    assert (DEFAULTS["window"], DEFAULTS["levels"]) == (spec_defaults()["window"],
                                                        spec_defaults()["levels"])
    assert glcm.TextureSpec("contrast").window == defaults["window"]
    text = {name: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            for name, v in defaults.items()}
    with open(os.path.join(ROOT, "dataflow", "metadata.json")) as f:
        metadata = {p["name"]: p["helpText"] for p in json.load(f)["parameters"]}
    for name, help_text in metadata.items():
        found = re.search(r"\(default ([^)]+)\)", help_text)
        if found and name in text and defaults[name] not in (None, False):
            assert found.group(1) == text[name], name
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    rows = dict(re.findall(r"^\| `--(\w+)`[^|]*\| `?([^|`]+?)`? \|", readme, re.M))
    for name in ("window", "levels", "tile", "quantize", "features", "output"):
        assert rows[name] == text[name], name
