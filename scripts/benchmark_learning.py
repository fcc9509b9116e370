"""What training adds: initial, noisy and random dictionaries, trained or not; see crsae_sort/bench/learning.py."""
from crsae_sort.bench.learning import main

if __name__ == "__main__":
    main()
