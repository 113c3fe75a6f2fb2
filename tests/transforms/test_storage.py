"""transforms.io.storage: the same behaviour on a local folder and on the GCS emulator."""

import io
import os
import time

import numpy as np
import pytest

from transforms.io import storage

LAYOUT = ["in/a.tif", "in/b.TIF", "in/sub/c.tif", "in/notes.txt", "in2/d.tif"]


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    request.getfixturevalue("gcs_emulator")
    bucket = request.getfixturevalue("bucket")
    return f"gs://{bucket}"


def names(root, found):
    return [uri[len(root) + 1:] for uri, _ in found]


def test_match_and_fingerprints(root):
    for name in LAYOUT:
        storage.write_bytes(storage.join(root, name), name.encode())
    assert names(root, storage.match(storage.join(root, "in/*.tif"))) == ["in/a.tif"]
    assert names(root, storage.match(storage.join(root, "in/*.[tT][iI][fF]"))) == [
        "in/a.tif", "in/b.TIF"]
    assert names(root, storage.match(storage.join(root, "in/**/*.tif"))) == [
        "in/a.tif", "in/sub/c.tif"]
    storage.write_bytes(storage.join(root, "in/.hidden.tif"), b"")
    storage.write_bytes(storage.join(root, "in/.work-1/x.tif"), b"")
    assert names(root, storage.match(storage.join(root, "in/**"))) == [
        "in/a.tif", "in/b.TIF", "in/notes.txt", "in/sub/c.tif"]  # files only, not hidden
    assert names(root, storage.match(storage.join(root, "in?/d.tif"))) == ["in2/d.tif"]
    assert storage.match(storage.join(root, "in/missing.tif")) == []
    assert storage.is_directory(storage.join(root, "in"))
    assert not storage.is_directory(storage.join(root, "in/a.tif"))
    [(uri, before)] = storage.match(storage.join(root, "in/a.tif"))
    time.sleep(0.01)
    storage.write_bytes(uri, b"other bytes")  # an overwrite changes the fingerprint
    [(_, after)] = storage.match(uri)
    assert after != before and after.startswith("11-")
    assert storage.read_bytes(uri) == b"other bytes"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "in/missing.tif"))


def everything(folder):
    """Every file under ``folder``, hidden ones too, relative names."""
    if folder.startswith("gs://"):
        bucket, name = storage.split_gcs(folder)
        return sorted(b.name[len(name) + 1:] for b in
                      storage.client().list_blobs(bucket, prefix=name + "/"))
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


def test_commits_leave_no_temporary_files_and_stale_scratch_is_removed(root, tmp_path):
    folder = storage.join(root, "scene")
    storage.write_bytes(storage.join(folder, "manifest.json"), b"{}")
    local = tmp_path / "built.tif"
    local.write_bytes(b"tif")
    storage.upload(str(local), storage.join(folder, "features.tif"))
    storage.save_npy(storage.join(folder, ".tiles-old", "r0_c0_b1.npy"), [1.0])
    storage.save_npy(storage.join(folder, ".tiles-mine", "r0_c0_b1.npy"), [2.0])
    assert everything(folder) == [".tiles-mine/r0_c0_b1.npy", ".tiles-old/r0_c0_b1.npy",
                                  "features.tif", "manifest.json"]
    assert storage.remove_stale(folder, (".tiles-",), keep=".tiles-mine",
                                older_than_seconds=3600) == []  # too recent
    time.sleep(0.05)
    assert storage.remove_stale(folder, (".tiles-",), keep=".tiles-mine",
                                older_than_seconds=0) == [".tiles-old"]
    assert storage.load_npy(storage.join(folder, ".tiles-mine", "r0_c0_b1.npy")) == [2.0]
    storage.delete_tree(storage.join(folder, ".tiles-mine"))
    assert everything(folder) == ["features.tif", "manifest.json"]


@pytest.mark.parametrize("block_bytes", [storage.NPY_BLOCK_BYTES, 100])
def test_save_npy_of_any_layout(root, monkeypatch, block_bytes):
    # strided, transposed and converted arrays, whole or in blocks of a row or more:
    # the file holds the bytes np.save writes for the contiguous, converted copy
    monkeypatch.setattr(storage, "NPY_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(5)
    model_output = rng.normal(size=(37, 29, 3)).astype(np.float32)
    cases = {"core": (model_output[3:-3, 2:-5], np.float32),
             "transposed": (np.moveaxis(model_output, -1, 0), None),
             "float64": (rng.normal(size=(11, 7)), np.float32),
             "one row": (model_output[0], None),
             "empty": (model_output[:0], None),
             "scalar": (np.float32(2.5), None)}
    for name, (array, dtype) in cases.items():
        uri = storage.join(root, "npy", name.replace(" ", "_") + ".npy")
        storage.save_npy(uri, array, dtype=dtype)
        expected = io.BytesIO()
        np.save(expected, np.array(array, dtype=dtype, order="C"))
        assert storage.read_bytes(uri) == expected.getvalue(), name
        back = storage.load_npy(uri)
        assert back.dtype == (dtype or np.asarray(array).dtype), name
        np.testing.assert_array_equal(back, np.asarray(array, dtype=back.dtype))


def test_gdal_options_follow_the_emulator_variable(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9999")
    options = storage.gdal_options("gs://b/x.tif")
    assert options["CPL_GS_ENDPOINT"] == "http://127.0.0.1:9999/"
    assert options["GS_NO_SIGN_REQUEST"] == "YES"
    assert options["CPL_MACHINE_IS_GCE"] == "NO"  # the worker image says YES
    assert storage.gdal_options("/local/x.tif") == {}
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert "CPL_GS_ENDPOINT" not in storage.gdal_options("gs://b/x.tif")
    assert "CPL_MACHINE_IS_GCE" not in storage.gdal_options("gs://b/x.tif")
    with pytest.raises(ValueError, match="names no bucket"):
        storage.split_gcs("gs:///x")


def test_list_files_and_exclusive_create(root):
    folder = storage.join(root, "scene", ".tiles-run")
    assert storage.list_files(folder, ".result") == []
    for name in ["r1_c0_i0.result", "r0_c0_i0.result", "r0_c0_i0.npy", "sub/x.result"]:
        storage.write_bytes(storage.join(folder, name), b"")
    assert storage.list_files(folder, ".result") == [
        storage.join(folder, "r0_c0_i0.result"), storage.join(folder, "r1_c0_i0.result")]
    claim = storage.join(folder, "finishing")
    assert storage.create_exclusive(claim)
    assert storage.read_bytes(claim) == b""
    if not root.startswith("gs://"):  # the emulator does not check preconditions
        assert not storage.create_exclusive(claim)


def test_one_interface_chosen_by_the_uri(root):
    backend = storage.backend_for(root)
    assert isinstance(backend, storage.Storage)
    assert isinstance(backend, storage.CloudStorage) == root.startswith("gs://")
    # errors come back as Python's own, whatever the back-end
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "nothing/here.txt"))
    assert storage.list_files(storage.join(root, "nothing"), ".txt") == []


def test_cloud_storage_errors_are_translated_in_one_place(gcs_emulator):
    # a bucket that does not exist: a 404 from the service, FileNotFoundError here
    with pytest.raises(FileNotFoundError, match="gs://no-such-bucket-glcm/x"):
        storage.match("gs://no-such-bucket-glcm/x/*.tif")
    with pytest.raises(FileNotFoundError):
        storage.write_bytes("gs://no-such-bucket-glcm/x/a.txt", b"a")
