"""The initial dictionary on 32-384 channels: methods, units found, seconds; see crsae_sort/bench/init.py."""
from crsae_sort.bench.init import main

if __name__ == "__main__":
    main()
