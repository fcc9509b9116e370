"""SISTA's warm-started frames against fewer FISTA iterations, one trained model; the WARMSTART table.

The command line of `crsae_sort.bench.warm_start`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.warm_start import main

if __name__ == "__main__":
    main()
