"""crsae against other spike sorters on SpikeInterface ground truth; the SORTERS table.

The command line of `crsae_sort.bench.sorters`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.sorters import main

if __name__ == "__main__":
    main()
