"""crsae without and with growth against tridesclous2 and spykingcircus2 over seeded tetrodes; the SWEEP table.

The command line of `crsae_sort.bench.sweep`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.sweep import main

if __name__ == "__main__":
    main()
