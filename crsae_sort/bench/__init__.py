"""Benchmarks of crsae-sort, importable so that ``scripts/`` stay thin entry points.

* :mod:`.convex_solvers` — reference solvers of the encoder's problem (FISTA to convergence,
  SPORCO's ADMM, CBP);
* :mod:`.convex` — ``crsae-sort bench convex``: the encoder against them, one process per run
  (:mod:`.convex_worker`);
* :mod:`.sorters` — crsae against other sorters through ``run_sorter`` (cases in
  :mod:`.sorters_cases`, tables and figure in :mod:`.sorters_report`); :mod:`.hybrid` builds its
  hybrid cases (generated units injected into the real recordings of ``../shared/data``);
* :mod:`.real` — the two real clips with ground truth (matching in :mod:`.real_scoring`, tables
  and figure in :mod:`.real_report`);
* :mod:`.learning` — what training adds: accuracy and atom-to-truth cosine from the initial, a
  noisy and a random dictionary, trained or not;
* :mod:`.speed` — end-to-end speed and memory; :mod:`.encoder` — the encoder's throughput;
* :mod:`.suite` — all of them, one after another (``scripts/benchmarks.py``);
* :mod:`.docs` — writing tables into ``docs/benchmarks.md`` between markers, the hardware line.

Each module with a ``main(argv)`` is the command line of ``scripts/benchmark_<name>.py`` (and of
``python -m crsae_sort.bench.<name>``).
"""
