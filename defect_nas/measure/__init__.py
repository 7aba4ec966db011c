"""Measuring models and machines: latency (eager, ONNX Runtime, quiet repeats, CUDA events), the
CPU's GEMM peak, FLOP counters, and the environment a number was taken in."""
