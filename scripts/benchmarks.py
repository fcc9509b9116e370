"""Regenerate every benchmark in docs/benchmarks.md with one command (--full for full sizes).

The command line of `crsae_sort.bench.suite`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.suite import main

if __name__ == "__main__":
    main()
