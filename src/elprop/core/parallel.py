"""Run independent tasks on a Dask cluster with a bounded window, writing each result as it arrives.

The driver (the calling process) owns every output file; workers only compute, so no two processes write the
same file, and a kill loses at most the tasks in flight. Used by ``density generate`` and ``label``.
"""
from __future__ import annotations


def run_dask(fn, chunks, args_of, write, workers: int = 2, scheduler: str | None = None,
             threads_per_worker: int = 1, log=print) -> None:
    """Call ``fn(*args_of(chunk))`` on the cluster for every chunk and ``write(result)`` in the driver.

    A ``LocalCluster`` of ``workers`` single-threaded processes (with ``OMP_NUM_THREADS=threads_per_worker``)
    unless ``scheduler`` names an existing one. At most two tasks per worker are in flight."""
    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
        log(f"dask: using the scheduler at {scheduler} ({len(client.scheduler_info()['workers'])} workers)")
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"OMP_NUM_THREADS": str(threads_per_worker)})
        client = Client(cluster)
    try:
        window = 2 * max(1, len(client.scheduler_info()["workers"]))
        it = iter(chunks)
        pending = as_completed()
        for c in it:
            pending.add(client.submit(fn, *args_of(c), pure=False))
            if pending.count() >= window:
                break
        for fut in pending:
            write(fut.result())
            fut.release()
            nxt = next(it, None)
            if nxt is not None:
                pending.add(client.submit(fn, *args_of(nxt), pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
