"""Benchmarks of crsae-sort, importable so that ``scripts/`` stay thin entry points.

* :mod:`.convex_solvers` — reference solvers of the encoder's problem (FISTA to convergence,
  SPORCO's ADMM, CBP);
* :mod:`.convex` — ``crsae-sort bench convex``: the encoder against them, one process per run
  (:mod:`.convex_worker`);
* :mod:`.docs` — writing tables into ``docs/benchmarks.md`` between markers, the hardware line.
"""
