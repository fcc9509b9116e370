"""Sort a manifest of recordings on a dask cluster with crsae-sort.

    python scripts/dask_cluster.py manifest.csv sorted/ --scheduler tcp://head-node:8786
    python scripts/dask_cluster.py manifest.csv sorted/ --local-workers 2     # a cluster on this machine

Start a cluster beforehand with `dask scheduler` on one node and `dask worker tcp://head-node:8786
--nthreads 1` on each worker node (every worker needs crsae-sort installed and the recordings at
the same paths), or use dask-jobqueue's SLURMCluster and pass its scheduler address. Workers do
not need to import crsae_sort themselves: the jobs carry crsae_sort.SORTER_NAME, which registers
the sorter when a worker unpickles it. Finished recordings are skipped on re-runs.

The command line does the same: crsae-sort batch manifest.csv -o sorted/ --engine dask --scheduler ADDRESS
"""
import argparse
import logging
import time

from distributed import Client, LocalCluster

from crsae_sort.batch import format_table, run_batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("output")
    parser.add_argument("--scheduler", help="address of a running dask scheduler")
    parser.add_argument("--local-workers", type=int, default=2, help="without --scheduler: local worker processes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter for every recording")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    params = dict(pair.split("=", 1) for pair in args.set)

    if args.scheduler:
        client = Client(args.scheduler)
    else:
        client = Client(LocalCluster(n_workers=args.local_workers, threads_per_worker=1, dashboard_address=None))
    n_workers = max(1, len(client.scheduler_info()["workers"]))
    print(f"dask: {n_workers} worker(s) at {client.scheduler.address}")
    t0 = time.perf_counter()
    try:
        rows = run_batch(args.manifest, args.output, engine="dask", n_jobs=n_workers, params=params,
                         engine_kwargs={"client": client})
    finally:
        client.close()
    print(format_table(rows))
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    raise SystemExit(1 if any(r.status == "failed" for r in rows) else 0)


if __name__ == "__main__":
    main()
