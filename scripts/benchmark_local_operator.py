"""Dense against local (spatially restricted) atoms: one FISTA iteration; see crsae_sort/bench/local_operator.py."""
from crsae_sort.bench.local_operator import main

if __name__ == "__main__":
    main()
