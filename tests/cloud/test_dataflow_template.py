"""The Dataflow launch path for real, up to the service: Beam's DataflowRunner in
template mode builds and stages the job graph on a storage emulator and writes the
job request where the Flex Template launcher would hand it to Dataflow.

No fake Dataflow API: the only thing not exercised is the service itself.
"""

import json
import os
import subprocess
import sys

import geopandas
import pytest
import shapely
from apache_beam.portability.api import beam_runner_api_pb2

from tests.beam_util import hints_under, leaf_accelerators
from transforms.io import storage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "europe-west4-docker.pkg.dev/my-proj/glcm/glcm-worker:0123abc"
ACCELERATOR = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
GROUP_BY_KEY = "beam:transform:group_by_key:v1"
TILE_GPU = "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8"


def launch(bucket, listing, template, *extra, scratch, machine="g2-standard-8",
           gpu_experiment=(f"--experiments={ACCELERATOR}",)):
    """``python -m pipeline`` in template mode, as the Flex Template launcher runs it
    (the launcher's --additional-experiments arrive as --experiments). It is not told
    no_use_multiple_sdk_containers: the pipeline adds that itself. ``scratch``: its
    temporary folder (Beam leaves the SDK's staged dependencies there)."""
    gs = f"gs://{bucket}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = fake_credentials(scratch)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["TMPDIR"] = str(scratch)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--runner=DataflowRunner",
         "--project=my-proj-123", "--region=europe-west4",
         f"--temp_location={gs}/temp", f"--staging_location={gs}/staging",
         f"--template_location={gs}/templates/{template}",
         f"--sdk_container_image={IMAGE}", "--sdk_location=container",
         "--experiments=use_runner_v2", *gpu_experiment,
         f"--machine_type={machine}", f"--input=@{gs}/lists/{listing}",
         f"--output={gs}/texture", "--accelerator=required", "--window=9",
         "--fail-on-error", *extra],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fake_credentials(folder):
    """A user's application-default credentials file whose access token never expires
    and is never checked (the storage emulator ignores it): Beam finds credentials at
    once instead of retrying its lookup for ~21 s, and nothing can reach a real
    account."""
    path = os.path.join(folder, "fake-adc.json")
    with open(path, "w") as f:
        json.dump({"type": "authorized_user", "client_id": "fake.apps.example",
                   "client_secret": "fake", "refresh_token": "fake", "token": "fake",
                   "expiry": "2999-01-01T00:00:00Z"}, f)
    return path


def model_bytes():
    """A small per-pixel model (.keras) with glcm layers."""
    import tempfile

    import keras

    import glcm

    x = keras.Input((None, None, 1))
    maps = glcm.layers.TextureMap(["contrast"], window=3, levels=8)(
        glcm.layers.Quantize(8, 0.0, 255.0)(x))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.keras")
        keras.Model(x, keras.layers.Dense(2)(maps)).save(path)
        with open(path, "rb") as f:
            return f.read()


def staged_graph(bucket, template):
    """The job request at the template location and the pipeline proto it names."""
    job = json.loads(storage.read_bytes(f"gs://{bucket}/templates/{template}"))
    url = job["environment"]["sdkPipelineOptions"]["options"]["pipelineUrl"]
    graph = beam_runner_api_pb2.Pipeline()
    graph.ParseFromString(storage.read_bytes(url))
    return job, graph, len(storage.read_bytes(url))


def leaves(graph, transform_id):
    t = graph.components.transforms[transform_id]
    if not t.subtransforms:
        return [t]
    return [leaf for sub in t.subtransforms for leaf in leaves(graph, sub)]


@pytest.mark.slow  # five launches in subprocesses
def test_template_mode_stages_the_job_graph_whatever_the_collection_size(bucket, tmp_path):
    gs = f"gs://{bucket}"
    # 10 and 100,000 listed scenes (that need not exist: nothing is listed at launch)
    for name, count in (("list-000010.txt", 10), ("list-100000.txt", 100_000)):
        lines = "".join(f"{gs}/scenes/s{k:06d}.tif\n" for k in range(count))
        storage.write_bytes(f"{gs}/lists/{name}", lines.encode())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    runs = {count: launch(bucket, f"list-{count:06d}.txt", f"t{count:06d}.json",
                          scratch=scratch)
            for count in (10, 100_000)}
    # a trained model on Cloud Storage: read and checked at launch, then passed on
    storage.write_bytes(f"{gs}/models/cover.keras", model_bytes())
    runs["model"] = launch(bucket, "list-000010.txt", "tmodel.json",
                           f"--model={gs}/models/cover.keras", "--classes=a,b",
                           scratch=scratch)
    # polygons on Cloud Storage: read and checked at launch, then passed on
    polygons = geopandas.GeoDataFrame({"parcel": ["a", "b"]}, crs="EPSG:32633", geometry=[
        shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)])
    polygons.to_parquet(tmp_path / "parcels.parquet")
    storage.write_bytes(f"{gs}/vectors/parcels.parquet",
                        (tmp_path / "parcels.parquet").read_bytes())
    runs["objects"] = launch(bucket, "list-000010.txt", "tobjects.json", "--mode=objects",
                             f"--objects={gs}/vectors/parcels.parquet", "--object-id=parcel",
                             scratch=scratch)
    # right fitting (run_dataflow.sh --mosaic-machine-type): GPUs on the tile steps only
    runs["fitted"] = launch(bucket, "list-000010.txt", "tfitted.json",
                            f"--tile-accelerator={TILE_GPU}", scratch=scratch,
                            machine="n2-standard-8", gpu_experiment=())
    for run in runs.values():
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
        assert "job graph written for Dataflow (template mode): no job started" in stdout

    options = staged_graph(bucket, "tmodel.json")[0]["environment"]["sdkPipelineOptions"]
    assert (options["options"]["model"], options["options"]["classes"]) == (
        f"{gs}/models/cover.keras", "a,b")
    options = staged_graph(bucket, "tobjects.json")[0]["environment"]["sdkPipelineOptions"]
    assert (options["options"]["objects"], options["options"]["object_id"]) == (
        f"{gs}/vectors/parcels.parquet", "parcel")
    staged = {count: staged_graph(bucket, f"t{count:06d}.json") for count in (10, 100_000)}
    job, graph, size = staged[10]
    # the job graph does not grow with the collection (100,000 listed paths would add
    # megabytes): each step's pickled, compressed function differs by a few bytes
    # between two launches (the names; pickling is not byte-stable): 4 to 72 bytes
    # in all seen
    assert abs(staged[100_000][2] - size) < 1024, (size, staged[100_000][2])
    environment = job["environment"]
    assert "use_runner_v2" in environment["experiments"]
    # one SDK process per worker (one TensorFlow on the GPU), without being asked
    assert "no_use_multiple_sdk_containers" in environment["experiments"]
    assert "use_multiple_sdk_containers" not in environment["experiments"]
    assert ACCELERATOR in environment["experiments"]  # the GPU request Dataflow reads
    [pool] = environment["workerPools"]
    assert pool["machineType"] == "g2-standard-8"
    assert pool["workerHarnessContainerImage"] == IMAGE
    assert [c["containerImage"] for c in pool["sdkHarnessContainerImages"]] == [IMAGE]
    options = environment["sdkPipelineOptions"]["options"]
    assert options["input"] == [f"@{gs}/lists/list-000010.txt"]
    assert (options["accelerator"], options["window"]) == ("required", 9)
    assert options["staging_location"].startswith(f"{gs}/staging/")

    # the steps are the pipeline's, and tiles are spread after planning (a shuffle
    # breaks fusion there)
    names = {t.unique_name: tid for tid, t in graph.components.transforms.items()}
    for step in ("Discover", "SpreadScenes", "Plan", "SpreadTiles", "Read", "Texture",
                 "WriteTile", "ByScene", "Finish", "WriteErrors"):
        assert step in names, step

    def feeds(producer, consumer):
        """``consumer`` reads only what ``producer`` writes."""
        outputs = set(graph.components.transforms[names[producer]].outputs.values())
        inputs = set(graph.components.transforms[names[consumer]].inputs.values())
        return bool(inputs) and inputs <= outputs

    # a shuffle between naming and planning (scenes that share a file name are
    # named under one key) and one after planning (a scene's tiles spread)
    for shuffle in ("SpreadScenes", "SpreadTiles"):
        assert any(leaf.spec.urn == GROUP_BY_KEY for leaf in leaves(graph, names[shuffle]))
    assert feeds("Discover/Name", "SpreadScenes") and feeds("SpreadScenes", "Plan")
    assert feeds("Plan", "SpreadTiles")
    # with --fail-on-error the job fails only after errors.jsonl is written
    assert feeds("WriteErrors/Write", "WriteErrors/FailOnError")

    # right fitting: the job's own workers have no GPU; the tile steps' environment
    # carries the accelerator hint Dataflow reads, the mosaic's does not
    job, graph, _ = staged_graph(bucket, "tfitted.json")
    environment = job["environment"]
    assert not any(e.startswith("worker_accelerator") for e in environment["experiments"])
    assert [p["machineType"] for p in environment["workerPools"]] == ["n2-standard-8"]
    names = {t.unique_name for t in graph.components.transforms.values()}
    hints = leaf_accelerators(graph)
    for step in ("Read", "Texture", "WriteTile"):
        assert set(hints_under(hints, step).values()) == {TILE_GPU}, step
    for step in ("Plan", "Finish"):
        assert set(hints_under(hints, step).values()) == {None}, step
    assert "FinishAfterLastTile" not in names
