"""Speed and memory of crsae-sort end to end on ground-truth tetrodes; the SPEED and MEMORY tables.

The command line of `crsae_sort.bench.speed`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.speed import main

if __name__ == "__main__":
    main()
