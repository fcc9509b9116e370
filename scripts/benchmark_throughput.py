"""Seconds per second of recording, stage by stage, against each stage's floor and spykingcircus2; the THROUGHPUT table.

The command line of `crsae_sort.bench.throughput`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.throughput import main

if __name__ == "__main__":
    main()
