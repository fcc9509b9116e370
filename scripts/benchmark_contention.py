"""Sorts sharing the CPU, before and after the thread fix; see crsae_sort/bench/contention.py."""
from crsae_sort.bench.contention import main

if __name__ == "__main__":
    main()
