"""crsae against tridesclous2 on the real locust tetrode of ../shared/data; the LOCUST table.

The command line of `crsae_sort.bench.locust`, where the comparison lives; `--help` lists the options.
"""
from crsae_sort.bench.locust import main

if __name__ == "__main__":
    main()
