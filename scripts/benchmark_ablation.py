"""Encoders x unrolled iterations x dictionary-gradient rules on ground truth; the ABLATION table.

The command line of `crsae_sort.bench.ablation`, where the benchmark lives; `--help` lists the options.
"""
from crsae_sort.bench.ablation import main

if __name__ == "__main__":
    main()
