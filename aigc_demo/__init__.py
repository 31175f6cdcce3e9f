"""AIGC Studio: generative-model pipelines (``pipelines/``), the Gradio UI (``ui/``) and training (``training/``).

Importing the package sets one process-wide default that must precede PyTorch: libgomp reads its environment
once, when it loads. llama.cpp and PyTorch run on separate threads (``compute.py``), i.e. in two OpenMP teams
with more threads than cores, where libgomp by default spins only 100 rounds before sleeping, so every parallel
region pays a wake-up. ``OMP_WAIT_POLICY=ACTIVE`` raises that to 1000 rounds; ``GOMP_SPINCOUNT`` keeps the
ordinary (not oversubscribed) spin at libgomp's default 3 ms instead of ACTIVE's 5 minutes, so idle threads
still sleep. On a 2-core AMX Xeon (2026-11-30, llama.cpp and bf16 images in one process; docs/performance.md)
decoding ran at 100-204 tokens/s with these settings against 74-112 without, batch-8 images at 0.27-0.33 s
against 0.30-0.41 s per image, and no CPU was used while idle. Set either variable yourself to override.
"""

import os
import sys

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "300000")
