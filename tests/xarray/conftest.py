"""One real dask.distributed cluster for the xarray tests: two worker processes,
started once for this folder (each worker imports TensorFlow once, whichever test
comes first) and stopped after it."""

import pytest


@pytest.fixture(scope="package")
def dask_client(tmp_path_factory):
    """A Client on a LocalCluster of two single-threaded worker processes. Not the
    default scheduler: the other tests keep Dask's threads, and these compute on
    the cluster by asking it (``dask_client.compute``)."""
    import dask
    from dask.distributed import Client, LocalCluster

    # the scheduler's and workers' scratch (lock files) under pytest's folder, not /tmp
    scratch = str(tmp_path_factory.mktemp("dask"))
    with dask.config.set({"temporary-directory": scratch}), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            local_directory=scratch) as cluster, Client(
            cluster, set_as_default=False) as client:
        yield client
