"""crsae and Kilosort4 side by side on one NVIDIA GPU; see crsae_sort/bench/gpu.py.

    python scripts/benchmark_gpu.py                      # both cases, table into docs/benchmarks.md
    python scripts/benchmark_gpu.py --cases np1-384 --np-duration-s 60 --no-doc
"""
from crsae_sort.bench.gpu import main

if __name__ == "__main__":
    main()
