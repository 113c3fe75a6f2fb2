"""One code path for local files and Cloud Storage (``gs://``).

Local paths use the file system; ``gs://`` URIs use google-cloud-storage directly
(listing, whole-object reads of small files, uploads) and GDAL's ``/vsigs/`` for
windowed raster reads. Writes are committed only when complete: a local file is
written under a temporary name and renamed; a Cloud Storage object exists only once
its upload has finished.

``STORAGE_EMULATOR_HOST`` (e.g. ``http://127.0.0.1:9023``) points every client at a
storage emulator, anonymously: google-cloud-storage honours it itself, and
:func:`gdal_options` derives GDAL's settings from it. Without it, the clients use
Application Default Credentials (on Dataflow: the worker's service account).
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shutil
import tempfile
import threading
import uuid
from typing import Dict, Iterator, List, Optional, Tuple

GCS_PREFIX = "gs://"
_local = threading.local()


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_PREFIX)


def split_gcs(uri: str) -> Tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``); ValueError without a bucket."""
    bucket, _, name = uri[len(GCS_PREFIX):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; use gs://BUCKET/path")
    return bucket, name


def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths, ``/``-joined for ``gs://``."""
    if is_gcs(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def normalize(uri: str) -> str:
    """Local paths made absolute (workers may run elsewhere); gs:// kept."""
    return uri.rstrip("/") if is_gcs(uri) else os.path.abspath(uri)


def emulator_host() -> Optional[str]:
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def client():
    """A google-cloud-storage client per thread (the client is not thread-safe)."""
    found = getattr(_local, "client", None)
    if found is None or getattr(_local, "host", None) != emulator_host():
        from google.cloud import storage

        if emulator_host():
            from google.auth.credentials import AnonymousCredentials

            found = storage.Client(credentials=AnonymousCredentials(), project="emulator")
        else:
            found = storage.Client()
        _local.client, _local.host = found, emulator_host()
    return found


def _blob(uri: str):
    bucket, name = split_gcs(uri)
    if not name:
        raise ValueError(f"{uri!r} names a bucket, not an object")
    return client().bucket(bucket).blob(name)


def gdal_options(uri: str = GCS_PREFIX) -> Dict[str, str]:
    """GDAL configuration for reading ``uri`` (empty for local files).

    ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` stops GDAL listing the bucket for
    sidecar files on every open (two ranged GETs per window instead of ~17).
    ``CPL_VSIL_CURL_NON_CACHED`` keeps GDAL from serving an overwritten object's old
    bytes from its process-wide cache (seen: a rerun in the same process read the
    previous generation of a replaced scene).
    """
    if not is_gcs(uri):
        return {}
    options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_USE_HEAD": "NO",
               "CPL_VSIL_CURL_NON_CACHED": "/vsigs/",
               "GDAL_HTTP_MAX_RETRY": "5", "GDAL_HTTP_RETRY_DELAY": "1"}
    host = emulator_host()
    if host:
        # The worker image sets CPL_MACHINE_IS_GCE=YES (credentials from the VM):
        # never on an emulator.
        options.update(CPL_GS_ENDPOINT=host.rstrip("/") + "/", GS_NO_SIGN_REQUEST="YES",
                       CPL_MACHINE_IS_GCE="NO")
    return options


def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    """Glob to regex: ``*`` and ``?`` stay within one path segment, ``**/`` spans
    zero or more folders, as in Python's ``glob(recursive=True)``."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def match(pattern: str) -> List[Tuple[str, str]]:
    """Files matching ``pattern``, sorted, with a fingerprint each.

    Returns:
      [(uri, fingerprint)]; the fingerprint is ``size-mtime_ns`` for local files and
      ``size-generation`` for Cloud Storage objects (a new generation on every
      overwrite), so a rerun can tell unchanged inputs from changed ones.
    """
    if not is_gcs(pattern):
        paths = glob.glob(pattern, recursive=True) if is_glob(pattern) else [pattern]
        found = []
        for path in paths:
            if os.path.isfile(path):
                stat = os.stat(path)
                found.append((os.path.abspath(path), f"{stat.st_size}-{stat.st_mtime_ns}"))
        return sorted(found)
    bucket, name = split_gcs(pattern)
    literal = re.split(r"[*?\[]", name, maxsplit=1)[0]
    regex = _pattern_regex(name)
    found = []
    for blob in client().list_blobs(bucket, prefix=literal):
        # as glob does locally, wildcards skip hidden names (e.g. our own scratch)
        hidden = any(part.startswith(".") for part in blob.name[len(literal):].split("/"))
        if regex.match(blob.name) and not hidden:
            found.append((f"{GCS_PREFIX}{bucket}/{blob.name}",
                          f"{blob.size}-{blob.generation}"))
    return sorted(found)


def list_files(folder: str, suffix: str) -> List[str]:
    """The files directly in ``folder`` whose names end with ``suffix``, sorted; empty
    if the folder does not exist."""
    if not is_gcs(folder):
        if not os.path.isdir(folder):
            return []
        return sorted(entry.path for entry in os.scandir(folder)
                      if entry.name.endswith(suffix) and entry.is_file())
    bucket, name = split_gcs(folder)
    base = name.rstrip("/") + "/"
    return sorted(f"{GCS_PREFIX}{bucket}/{blob.name}"
                  for blob in client().list_blobs(bucket, prefix=base)
                  if blob.name.endswith(suffix) and "/" not in blob.name[len(base):])


def create_exclusive(uri: str) -> bool:
    """Creates the empty file ``uri`` unless it exists, atomically: of several
    processes trying, exactly one gets True (local: ``O_EXCL``; Cloud Storage: the
    ``ifGenerationMatch=0`` precondition, which the emulator does not check)."""
    if is_gcs(uri):
        from google.api_core.exceptions import PreconditionFailed

        try:
            _blob(uri).upload_from_string(b"", if_generation_match=0)
        except PreconditionFailed:
            return False
        return True
    os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
    try:
        os.close(os.open(uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def is_directory(uri: str) -> bool:
    """A local directory, or a gs:// prefix that has objects under ``uri/``."""
    if not is_gcs(uri):
        return os.path.isdir(uri)
    bucket, name = split_gcs(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    return any(True for _ in client().list_blobs(bucket, prefix=prefix, max_results=1))


def read_bytes(uri: str) -> bytes:
    """The whole file; FileNotFoundError if it does not exist."""
    if not is_gcs(uri):
        with open(uri, "rb") as f:
            return f.read()
    from google.api_core.exceptions import NotFound

    try:
        return _blob(uri).download_as_bytes()
    except NotFound:
        raise FileNotFoundError(f"{uri} does not exist") from None


TEMPORARY_PREFIX = ".tmp-"
WORKDIR_PREFIX = ".work-"


def _temporary_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{TEMPORARY_PREFIX}{name}-{uuid.uuid4().hex[:12]}")


def write_bytes(uri: str, data: bytes) -> None:
    """Writes ``data`` atomically (temporary file + rename, or one upload)."""
    if is_gcs(uri):
        _blob(uri).upload_from_string(data)
        return
    os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
    tmp = _temporary_name(uri)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, uri)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def upload(local_path: str, uri: str) -> None:
    """Commits a finished local file to ``uri`` (rename, or an upload that becomes
    visible only once complete)."""
    if is_gcs(uri):
        _blob(uri).upload_from_filename(local_path)
        return
    os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
    try:
        os.replace(local_path, uri)
    except OSError:  # another file system: copy beside the target, then rename
        tmp = _temporary_name(uri)
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, uri)


def delete_tree(uri: str) -> None:
    """Removes a folder (local) or every object under the prefix ``uri/`` (gs)."""
    if not is_gcs(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    bucket, name = split_gcs(uri)
    for blob in list(client().list_blobs(bucket, prefix=name.rstrip("/") + "/")):
        blob.delete()


def remove_stale(folder: str, prefixes: Tuple[str, ...], keep: str,
                 older_than_seconds: float) -> List[str]:
    """Removes what killed runs left in ``folder``: entries whose names start with one
    of ``prefixes``, other than ``keep``, untouched for ``older_than_seconds`` (a run
    still at work keeps writing to its own). Returns the names removed."""
    import time

    limit = time.time() - older_than_seconds
    removed = []
    if not is_gcs(folder):
        if not os.path.isdir(folder):
            return removed
        for entry in os.scandir(folder):
            if (entry.name.startswith(prefixes) and entry.name != keep
                    and entry.stat(follow_symlinks=False).st_mtime < limit):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.remove(entry.path)
                removed.append(entry.name)
        return removed
    bucket, name = split_gcs(folder)
    base = name.rstrip("/") + "/"
    for blob in list(client().list_blobs(bucket, prefix=base + ".")):
        top = blob.name[len(base):].split("/", 1)[0]
        if (top.startswith(prefixes) and top != keep and blob.updated is not None
                and blob.updated.timestamp() < limit):
            blob.delete()
            if top not in removed:
                removed.append(top)
    return removed


def makedirs(uri: str) -> None:
    """Creates a local output folder; nothing to do on Cloud Storage."""
    if not is_gcs(uri):
        os.makedirs(uri, exist_ok=True)


@contextlib.contextmanager
def workdir(output_folder: str) -> Iterator[str]:
    """A private scratch folder for building files before they are committed: inside
    the (local) output folder, so the commit is a rename on the same file system,
    or the system's temporary folder for gs:// output."""
    if is_gcs(output_folder):
        with tempfile.TemporaryDirectory(prefix="glcm-") as work:
            yield work
        return
    os.makedirs(output_folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_folder, prefix=WORKDIR_PREFIX) as work:
        yield work


def save_npy(uri: str, array) -> None:
    """An array as a ``.npy`` file, committed atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    write_bytes(uri, buffer.getvalue())


def load_npy(uri: str):
    import numpy as np

    if not is_gcs(uri):
        return np.load(uri)  # no intermediate bytes copy
    return np.load(io.BytesIO(read_bytes(uri)))
