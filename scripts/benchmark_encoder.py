"""Throughput of the unrolled FISTA encoder against its arithmetic floor; the ENCODER table.

The command line of `crsae_sort.bench.encoder`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.encoder import main

if __name__ == "__main__":
    main()
