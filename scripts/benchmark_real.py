"""crsae-sort on the two real clips with ground truth in ../shared/data, scored; the REAL table.

The command line of `crsae_sort.bench.real`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.real import main

if __name__ == "__main__":
    main()
