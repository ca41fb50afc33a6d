"""Speed and memory measurements of refseg_core (issue 7): run ``python benchmarks/run_cpu.py`` (``make
bench``) or, on a CUDA machine, ``python benchmarks/run_gpu.py``. See ``benchmarks/README.md``."""
