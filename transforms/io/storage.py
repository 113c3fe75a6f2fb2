"""One interface for local files and Cloud Storage (``gs://``).

:func:`backend_for` picks the back-end by the URI: :class:`LocalStorage` for paths,
:class:`CloudStorage` for ``gs://``. Both implement :class:`Storage`, a small
interface (match, list, read, write, upload, delete, exclusive create, scratch
folders); the module-level functions dispatch to the right one, so callers never
branch on the URI. Writes are committed only when complete: a local file is written
under a temporary name and renamed; a Cloud Storage object exists only once its
upload has finished.

Cloud Storage specifics are explicit in :class:`CloudStorage`: fingerprints from
object generations (a new one on every overwrite), exclusive creation by the
``ifGenerationMatch=0`` precondition, GDAL's ``/vsigs/`` settings for raster reads.
Its client errors are translated in one place (:meth:`CloudStorage._errors`):
not found -> FileNotFoundError, forbidden -> PermissionError, anything else from the
service -> OSError (a retry may help).

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
import time
import uuid
from typing import Dict, Iterator, List, Optional, Tuple

GCS_PREFIX = "gs://"
TEMPORARY_PREFIX = ".tmp-"
WORKDIR_PREFIX = ".work-"
_local = threading.local()


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_PREFIX)


def split_gcs(uri: str) -> Tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``); ValueError without a bucket."""
    bucket, _, name = uri[len(GCS_PREFIX):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; use gs://BUCKET/path")
    return bucket, name


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


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


class Storage:
    """What the pipeline needs of a storage back-end. Every method takes full URIs
    (or paths) of that back-end."""

    def join(self, base: str, *parts: str) -> str:
        raise NotImplementedError

    def normalize(self, uri: str) -> str:
        """The canonical form of ``uri`` (workers may run elsewhere)."""
        raise NotImplementedError

    def match(self, pattern: str) -> List[Tuple[str, str]]:
        """[(uri, fingerprint)] of the files matching a glob or naming a file, sorted;
        wildcards skip hidden names (our own scratch among them). A rerun recomputes
        an input whose fingerprint changed."""
        raise NotImplementedError

    def list_files(self, folder: str, suffix: str) -> List[str]:
        """The files directly in ``folder`` ending with ``suffix``, sorted; empty if
        the folder does not exist."""
        raise NotImplementedError

    def is_directory(self, uri: str) -> bool:
        raise NotImplementedError

    def read_bytes(self, uri: str) -> bytes:
        """The whole file; FileNotFoundError if it does not exist."""
        raise NotImplementedError

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Writes ``data``, visible only once complete."""
        raise NotImplementedError

    def upload(self, local_path: str, uri: str) -> None:
        """Commits a finished local file to ``uri``, visible only once complete."""
        raise NotImplementedError

    def write_with(self, uri: str, write) -> None:
        """Writes ``uri`` by ``write(file)`` on a local file, committed whole: no
        copy of the content in memory (a tile's features are tens of MB)."""
        with tempfile.TemporaryDirectory(prefix="glcm-write-") as folder:
            path = os.path.join(folder, "part")
            with open(path, "wb") as f:
                write(f)
            self.upload(path, uri)

    def create_exclusive(self, uri: str) -> bool:
        """Creates the empty file ``uri`` unless it exists: of several processes
        trying at once, exactly one gets True."""
        raise NotImplementedError

    def delete_tree(self, uri: str) -> None:
        """Removes a folder and everything under it (nothing if it is not there)."""
        raise NotImplementedError

    def remove_stale(self, folder: str, prefixes: Tuple[str, ...], keep: str,
                     older_than_seconds: float) -> List[str]:
        """Removes the entries of ``folder`` whose names start with one of
        ``prefixes``, other than ``keep``, untouched for ``older_than_seconds``;
        returns their names."""
        raise NotImplementedError

    def makedirs(self, uri: str) -> None:
        """Creates an output folder where folders exist."""

    def workdir(self, output_folder: str):
        """A private local scratch folder (context manager) for files built before
        they are committed to ``output_folder``."""
        raise NotImplementedError

    def gdal_options(self, uri: str) -> Dict[str, str]:
        """GDAL configuration for reading ``uri``."""
        return {}


class LocalStorage(Storage):
    """Local paths: atomic writes by temporary file and rename; fingerprints are
    size and modification time."""

    def join(self, base, *parts):
        return os.path.join(base, *parts)

    def normalize(self, uri):
        return os.path.abspath(uri)

    def match(self, pattern):
        paths = glob.glob(pattern, recursive=True) if is_glob(pattern) else [pattern]
        found = []
        for path in paths:
            if os.path.isfile(path):
                stat = os.stat(path)
                found.append((os.path.abspath(path), f"{stat.st_size}-{stat.st_mtime_ns}"))
        return sorted(found)

    def list_files(self, folder, suffix):
        if not os.path.isdir(folder):
            return []
        return sorted(entry.path for entry in os.scandir(folder)
                      if entry.name.endswith(suffix) and entry.is_file())

    def is_directory(self, uri):
        return os.path.isdir(uri)

    def read_bytes(self, uri):
        with open(uri, "rb") as f:
            return f.read()

    def write_bytes(self, uri, data):
        self.write_with(uri, lambda f: f.write(data))

    def write_with(self, uri, write):
        # beside the target: the rename that commits it stays on one file system
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        tmp = _temporary_name(uri)
        try:
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, uri)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def upload(self, local_path, uri):
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        try:
            os.replace(local_path, uri)
        except OSError:  # another file system: copy beside the target, then rename
            tmp = _temporary_name(uri)
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, uri)

    def create_exclusive(self, uri):
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        try:
            os.close(os.open(uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def delete_tree(self, uri):
        shutil.rmtree(uri, ignore_errors=True)

    def remove_stale(self, folder, prefixes, keep, older_than_seconds):
        limit = time.time() - older_than_seconds
        removed = []
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

    def makedirs(self, uri):
        os.makedirs(uri, exist_ok=True)

    @contextlib.contextmanager
    def workdir(self, output_folder):
        # inside the output folder: the commit is then a rename on one file system
        os.makedirs(output_folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=output_folder, prefix=WORKDIR_PREFIX) as work:
            yield work


class CloudStorage(Storage):
    """Cloud Storage through google-cloud-storage (listing, whole-object reads,
    uploads) and GDAL's ``/vsigs/`` (windowed raster reads). Fingerprints are size
    and object generation; exclusive creation uses ``ifGenerationMatch=0`` (which
    the emulator does not enforce)."""

    @contextlib.contextmanager
    def _errors(self, uri: str):
        """The one place where the client's errors become Python's: not found ->
        FileNotFoundError, forbidden -> PermissionError, any other service error ->
        OSError (worth a retry)."""
        from google.api_core import exceptions

        try:
            yield
        except exceptions.NotFound as exc:
            raise FileNotFoundError(f"{uri} does not exist ({exc.message})") from None
        except exceptions.Forbidden as exc:
            raise PermissionError(f"{uri}: access denied ({exc.message}); check the "
                                  f"service account's roles on the bucket") from None
        except exceptions.PreconditionFailed:
            raise
        except exceptions.GoogleAPIError as exc:
            raise OSError(f"{uri}: Cloud Storage error ({exc})") from exc

    def _blob(self, uri: str):
        bucket, name = split_gcs(uri)
        if not name:
            raise ValueError(f"{uri!r} names a bucket, not an object")
        return client().bucket(bucket).blob(name)

    def _list(self, uri: str, prefix: str, **kwargs):
        bucket, _ = split_gcs(uri)
        with self._errors(uri):
            return bucket, list(client().list_blobs(bucket, prefix=prefix, **kwargs))

    def join(self, base, *parts):
        return "/".join([base.rstrip("/"), *parts])

    def normalize(self, uri):
        return uri.rstrip("/")

    def match(self, pattern):
        _, name = split_gcs(pattern)
        literal = re.split(r"[*?\[]", name, maxsplit=1)[0]
        regex = _pattern_regex(name)
        bucket, blobs = self._list(pattern, literal)
        found = []
        for blob in blobs:
            # as glob does locally, wildcards skip hidden names (e.g. our own scratch)
            hidden = any(part.startswith(".") for part in blob.name[len(literal):].split("/"))
            if regex.match(blob.name) and not hidden:
                found.append((f"{GCS_PREFIX}{bucket}/{blob.name}",
                              f"{blob.size}-{blob.generation}"))
        return sorted(found)

    def list_files(self, folder, suffix):
        _, name = split_gcs(folder)
        base = name.rstrip("/") + "/"
        bucket, blobs = self._list(folder, base)
        return sorted(f"{GCS_PREFIX}{bucket}/{blob.name}" for blob in blobs
                      if blob.name.endswith(suffix) and "/" not in blob.name[len(base):])

    def is_directory(self, uri):
        _, name = split_gcs(uri)
        prefix = name.rstrip("/") + "/" if name else ""
        return bool(self._list(uri, prefix, max_results=1)[1])

    def read_bytes(self, uri):
        with self._errors(uri):
            return self._blob(uri).download_as_bytes()

    def write_bytes(self, uri, data):
        with self._errors(uri):
            self._blob(uri).upload_from_string(data)

    def upload(self, local_path, uri):
        with self._errors(uri):
            self._blob(uri).upload_from_filename(local_path)

    def create_exclusive(self, uri):
        from google.api_core.exceptions import PreconditionFailed

        try:
            with self._errors(uri):
                self._blob(uri).upload_from_string(b"", if_generation_match=0)
        except PreconditionFailed:
            return False
        return True

    def delete_tree(self, uri):
        _, name = split_gcs(uri)
        _, blobs = self._list(uri, name.rstrip("/") + "/")
        with self._errors(uri):
            for blob in blobs:
                blob.delete()

    def remove_stale(self, folder, prefixes, keep, older_than_seconds):
        limit = time.time() - older_than_seconds
        _, name = split_gcs(folder)
        base = name.rstrip("/") + "/"
        _, blobs = self._list(folder, base + ".")
        removed = []
        with self._errors(folder):
            for blob in blobs:
                top = blob.name[len(base):].split("/", 1)[0]
                if (top.startswith(prefixes) and top != keep and blob.updated is not None
                        and blob.updated.timestamp() < limit):
                    blob.delete()
                    if top not in removed:
                        removed.append(top)
        return removed

    @contextlib.contextmanager
    def workdir(self, output_folder):
        # outputs are uploaded whole from the system's temporary folder
        with tempfile.TemporaryDirectory(prefix="glcm-") as work:
            yield work

    def gdal_options(self, uri):
        """``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` stops GDAL listing the bucket for
        sidecar files on every open (two ranged GETs per window instead of ~17).
        ``CPL_VSIL_CURL_NON_CACHED`` keeps GDAL from serving an overwritten object's
        old bytes from its process-wide cache (seen: a rerun in the same process read
        the previous generation of a replaced scene)."""
        options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                   "CPL_VSIL_CURL_USE_HEAD": "NO", "CPL_VSIL_CURL_NON_CACHED": "/vsigs/",
                   "GDAL_HTTP_MAX_RETRY": "5", "GDAL_HTTP_RETRY_DELAY": "1"}
        host = emulator_host()
        if host:
            # The worker image sets CPL_MACHINE_IS_GCE=YES (credentials from the VM):
            # never on an emulator.
            options.update(CPL_GS_ENDPOINT=host.rstrip("/") + "/",
                           GS_NO_SIGN_REQUEST="YES", CPL_MACHINE_IS_GCE="NO")
        return options


LOCAL, CLOUD = LocalStorage(), CloudStorage()


def backend_for(uri: str) -> Storage:
    """The back-end of ``uri``: Cloud Storage for ``gs://``, local otherwise."""
    return CLOUD if is_gcs(uri) else LOCAL


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


def _temporary_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{TEMPORARY_PREFIX}{name}-{uuid.uuid4().hex[:12]}")


# -- the interface, dispatched by URI --------------------------------------------------
def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths, ``/``-joined for ``gs://``."""
    return backend_for(base).join(base, *parts)


def normalize(uri: str) -> str:
    """Local paths made absolute (workers may run elsewhere); gs:// kept."""
    return backend_for(uri).normalize(uri)


def match(pattern: str) -> List[Tuple[str, str]]:
    """Files matching ``pattern`` (a glob or a file), sorted, with a fingerprint each:
    ``size-mtime_ns`` locally, ``size-generation`` on Cloud Storage."""
    return backend_for(pattern).match(pattern)


def list_files(folder: str, suffix: str) -> List[str]:
    return backend_for(folder).list_files(folder, suffix)


def is_directory(uri: str) -> bool:
    """A local directory, or a gs:// prefix that has objects under ``uri/``."""
    return backend_for(uri).is_directory(uri)


def read_bytes(uri: str) -> bytes:
    """The whole file; FileNotFoundError if it does not exist."""
    return backend_for(uri).read_bytes(uri)


def write_bytes(uri: str, data: bytes) -> None:
    """Writes ``data`` atomically (temporary file + rename, or one upload)."""
    backend_for(uri).write_bytes(uri, data)


def upload(local_path: str, uri: str) -> None:
    """Commits a finished local file to ``uri`` (rename, or an upload that becomes
    visible only once complete)."""
    backend_for(uri).upload(local_path, uri)


def create_exclusive(uri: str) -> bool:
    """Creates the empty file ``uri`` unless it exists, atomically: of several
    processes trying, exactly one gets True (local: ``O_EXCL``; Cloud Storage: the
    ``ifGenerationMatch=0`` precondition, which the emulator does not check)."""
    return backend_for(uri).create_exclusive(uri)


def delete_tree(uri: str) -> None:
    """Removes a folder (local) or every object under the prefix ``uri/`` (gs)."""
    backend_for(uri).delete_tree(uri)


def remove_stale(folder: str, prefixes: Tuple[str, ...], keep: str,
                 older_than_seconds: float) -> List[str]:
    """Removes what killed runs left in ``folder`` (see :meth:`Storage.remove_stale`)."""
    return backend_for(folder).remove_stale(folder, prefixes, keep, older_than_seconds)


def makedirs(uri: str) -> None:
    """Creates a local output folder; nothing to do on Cloud Storage."""
    backend_for(uri).makedirs(uri)


def workdir(output_folder: str) -> Iterator[str]:
    """A private scratch folder for building files before they are committed: inside
    the (local) output folder, so the commit is a rename on the same file system,
    or the system's temporary folder for gs:// output."""
    return backend_for(output_folder).workdir(output_folder)


def gdal_options(uri: str = GCS_PREFIX) -> Dict[str, str]:
    """GDAL configuration for reading ``uri`` (empty for local files)."""
    return backend_for(uri).gdal_options(uri)


def save_npy(uri: str, array, dtype=None) -> None:
    """An array as a C-order ``.npy`` file (``dtype``: converted to it on the way),
    committed atomically. Written straight to a file (through an in-memory buffer a
    32 MB tile took 76 ms instead of 11) and a block of rows at a time
    (:data:`NPY_BLOCK_BYTES`): a strided array, such as a tile's core cut out of the
    model's output, is made contiguous in small pieces of reused memory instead of one
    fresh allocation as large as the tile, whose page faults cost more than the copy
    (docs/performance.md, "Feeding the kernel")."""
    backend_for(uri).write_with(uri, lambda f: _write_npy(f, array, dtype))


# Bytes per block of rows written by save_npy: small enough for the C library's
# allocator to reuse the block's memory rather than map fresh pages for each.
NPY_BLOCK_BYTES = 2 * 2 ** 20


def _write_npy(f, array, dtype) -> None:
    """Writes ``array`` (as ``dtype``) to the open file ``f`` in the ``.npy`` format,
    the bytes :func:`numpy.save` writes for its contiguous copy."""
    import numpy as np

    array = np.asarray(array)
    dtype = array.dtype if dtype is None else np.dtype(dtype)
    if array.ndim == 0 or dtype.hasobject:
        np.save(f, array.astype(dtype, copy=False))
        return
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": array.shape}
    np.lib.format.write_array_header_1_0(f, header)
    row_bytes = dtype.itemsize * int(np.prod(array.shape[1:]))
    rows = max(1, NPY_BLOCK_BYTES // max(1, row_bytes))
    for start in range(0, array.shape[0], rows):
        f.write(np.ascontiguousarray(array[start:start + rows], dtype=dtype).data)


def load_npy(uri: str, mmap: bool = False):
    """An array saved by :func:`save_npy`. ``mmap``: a local file is mapped read-only
    instead of read into new memory (a reader that copies it once anyway, as GDAL
    writing a mosaic does, saves the allocation and its page faults); a gs:// object
    is always read whole."""
    import numpy as np

    if not is_gcs(uri):
        return np.load(uri, mmap_mode="r" if mmap else None)  # no bytes copy
    return np.load(io.BytesIO(read_bytes(uri)))
