"""A UNet (or a decoder) compiled for the CPU: inductor with frozen weights, used for the input shapes it was
built for.

On a 2-core AMX Xeon (2026-11-30; bf16, 20 guided steps at 64x64, bench/image.py) it made an image in
0.59-0.66 s at batch 1 against 0.78-1.09 s eager (oneDNN with prepacked linears), 0.39 against 0.50 s at
batch 8. Freezing turns the weights into constants, so inductor folds and fuses the small ops around the
convolutions; without it ``torch.compile`` is no faster than eager. Compiling takes about a minute per input
shape on such a CPU (bench/unet_compile.py), so the app compiles in the background and serves the eager UNet
until the compiled one is ready and checked. The compiled kernels are kept in ``ImageConfig.compile_cache``:
the next start on the same machine class traces the UNet again but loads them instead of building them.

It is compiled for a few input signatures (the app: batch 1 and the largest batch, with guidance, at the
native size, the default scheduler's timesteps; the few-step student's UNet for the Live request, batch 1
without guidance; each model's decoder at batch 1). Anything else (batch 3, no guidance, another size, a
scheduler with float timesteps) runs eager: a recompilation in the middle of a request would stall it for a
minute.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# Largest difference allowed between the compiled and the eager UNet on the compile-time example, relative
# to the output's scale: bf16 kernels that fuse differently round differently, nothing more.
AGREEMENT = 0.05

# freezing: weights become constants, so convolutions are packed once and small ops fuse around them.
# cpp_wrapper: the graph's kernels are called from C++ instead of Python, ~2 ms less per call: it matters
# at batch 1 (bench/unet_compile.py) and costs ~20 s more compile per shape.
# No weight prepacking: oneDNN's packed weights are tensors inductor's FX-graph cache cannot store, so with them
# every start compiled from scratch; without them the kernels are cached, for ~3% per call (bench/unet_compile.py).
INDUCTOR_OPTIONS = {"freezing": True, "cpp_wrapper": True, "cpp.weight_prepack": False}

# Attention as plain matmul-softmax-matmul instead of the fused SDPA kernel, for latents up to this many
# positions: inductor fuses it around the emoji model's 12- and 24-wide heads, which the flash kernel serves
# poorly (bench/unet_compile.py: 7 % faster per call at batch 1, 9 % at batch 8, 256 positions). Larger latents
# (Stable Diffusion's 4,096) keep SDPA, whose score matrices never exist in memory whole.
MATH_ATTENTION_MAX_POSITIONS = 1024


def keep_tracing_to_its_thread() -> None:
    """Make torch.fx's tracing patches act only in the thread that traces.

    While it traces (torch.compile does, in the background), torch.fx replaces ``nn.Module.__call__`` and
    ``__getattr__`` (and some module globals) for the whole process; any model another thread runs meanwhile (the
    eager UNet serving requests, the prompt filter's text encoder) then fails with NameError "module is not
    installed as a submodule". Each patch is wrapped so that other threads see the original. Idempotent."""
    from torch.fx import _symbolic_trace as fx

    patcher = getattr(fx, "_Patcher", None)
    if patcher is None or getattr(patcher, "thread_scoped", False):
        return
    patch, patch_method = patcher.patch, patcher.patch_method

    def scoped(new_fn: Callable, original: Callable) -> Callable:
        owner = threading.get_ident()

        @functools.wraps(new_fn)
        def in_the_tracing_thread_only(*args, **kwargs):
            return (new_fn if threading.get_ident() == owner else original)(*args, **kwargs)

        return in_the_tracing_thread_only

    def scoped_patch(self, frame_dict, name, new_fn, deduplicate=True):
        original = frame_dict[name] if name in frame_dict else getattr(builtins, name, None)
        wrapped = new_fn if original is None else scoped(new_fn, original)
        return patch(self, frame_dict, name, wrapped, deduplicate)

    def scoped_patch_method(self, cls, name, new_fn, deduplicate=True):
        return patch_method(self, cls, name, scoped(new_fn, getattr(cls, name)), deduplicate)

    patcher.patch, patcher.patch_method, patcher.thread_scoped = scoped_patch, scoped_patch_method, True


def use_math_attention(unet: torch.nn.Module, examples: list[tuple[torch.Tensor, ...]]) -> bool:
    """Switch ``unet`` (the copy about to be compiled) to plain attention when its latents are small."""
    from diffusers.models.attention_processor import AttnProcessor

    if not hasattr(unet, "set_attn_processor"):
        return False
    positions = max(example[0].shape[-2] * example[0].shape[-1] for example in examples)
    if positions > MATH_ATTENTION_MAX_POSITIONS:
        return False
    unet.set_attn_processor(AttnProcessor())
    return True


def use_compile_cache(folder: str) -> None:
    """Keep inductor's caches in ``folder`` ("" leaves inductor's default). Process-wide: inductor reads the
    variable whenever it looks up or stores a compiled graph."""
    if folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder).resolve())


def compile_marker(
    folder: str, plain: torch.nn.Module, examples: list[tuple[torch.Tensor, ...]], kind: str = "unet"
) -> Path | None:
    """Where a successful compile of ``plain`` for ``examples`` on this machine class leaves its note in the cache
    ``folder``, named by what the compiled kernels depend on: Python, torch and diffusers, the CPU's vector
    instruction sets, the options, the input signatures, the thread count and the weights. None without a
    cache folder."""
    if not folder:
        return None
    import platform

    import diffusers

    key = hashlib.sha256()
    versions = f"{platform.python_version()} {torch.__version__} {diffusers.__version__}"
    key.update(f"{versions} {_vector_isa()} {sorted(INDUCTOR_OPTIONS.items())}".encode())
    key.update(f"{[_signature(*e) for e in examples]} {torch.get_num_threads()}".encode())
    for name, tensor in plain.state_dict().items():
        key.update(name.encode())
        key.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return Path(folder) / f"{kind}-{key.hexdigest()[:20]}.json"


def _vector_isa() -> str:
    """The CPU's vector instruction sets (what inductor's C++ kernels are built for), not its whole flag list,
    which differs between hosts of one machine class."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        pass
    wanted = sorted({f for f in flags.split() if f.startswith(("avx", "amx", "fma", "f16c", "sse4"))})
    return f"{torch.backends.cpu.get_cpu_capability()} {' '.join(wanted)}"


def _cache_counts() -> tuple[int, int]:
    """Inductor's FX-graph cache so far: (graphs loaded from it, graphs it stored or loaded). A graph it could
    not store, or any graph while its cache is off, counts in neither."""
    from torch._dynamo.utils import counters

    hits, misses = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
    return int(hits), int(hits + misses)


def _signature(*tensors: torch.Tensor) -> tuple:
    # Inference tensors (made under torch.inference_mode) dispatch differently: compiled code guards on it.
    return tuple(
        (tuple(t.shape), t.stride(), t.dtype, t.device, t.is_inference(), t.requires_grad) for t in tensors
    )


class CompiledModel:
    """Calls a model with positional tensors and returns its output tensor: through the compiled copy when it
    is ready and the inputs match a compiled signature, else ``eager``. ``call(module, *inputs)`` is how the
    model is called (a subclass says); ``name`` is for the logs."""

    name = "model"

    def __init__(self, eager: torch.nn.Module):
        self.eager = eager
        self._compiled: Callable | None = None
        self._keys: set[tuple] = set()
        self._lock = threading.Lock()
        self.state = "eager"  # "compiling" -> "ready" | "failed"
        self.compile_seconds: float | None = None
        self.cached_graphs = 0  # compiled graphs loaded from inductor's cache instead of built
        self.compiled_calls = 0  # how many calls the compiled copy served (tests, logs)
        self.last_call_compiled = False
        self.math_attention = False

    @staticmethod
    def call(module, *inputs) -> torch.Tensor:
        return module(*inputs)

    def __call__(self, *inputs) -> torch.Tensor:
        compiled = self._compiled
        if compiled is not None and _signature(*inputs) in self._keys:
            try:
                with torch.inference_mode():
                    out = compiled(*inputs)
                self.compiled_calls += 1
                self.last_call_compiled = True
                return out
            except Exception as err:  # never let the compiled copy fail a request
                log.warning(
                    "compiled %s failed on these inputs (%s); serving eager from now on", self.name, err
                )
                self._disable()
        self.last_call_compiled = False
        return self.call(self.eager, *inputs)

    def _disable(self) -> None:
        with self._lock:  # the compile thread checks the state under the same lock before publishing
            self._compiled, self.state = None, "failed"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def compiled_shapes(self) -> int:
        """Input signatures served compiled so far (while compiling, the ones already checked)."""
        return len(self._keys) if self._compiled is not None else 0

    def compile(
        self,
        plain: torch.nn.Module,
        examples: list[tuple[torch.Tensor, ...]],
        options: dict | None = None,
        math_attention: bool = True,
        marker: Path | None = None,
    ) -> None:
        """Compile ``plain`` (an unpacked copy of the eager model) for each example's signature; blocking.

        An example is the inputs of one call, e.g. (sample, timestep, encoder_hidden_states). Each signature
        is served compiled as soon as its compiled code agrees with the eager model, before the next one is
        compiled (the default request's batch 1 first). Served calls run "run-only" (``torch._dynamo.run``): the compiled code when its
        guards hold, else eager, never a recompilation in the middle of a request; per thread, so the compile
        of the next signature goes on meanwhile. ``options``: inductor settings (default INDUCTOR_OPTIONS);
        ``math_attention``: allow use_math_attention (the bench turns it off to compare); ``marker``: the note
        (``compile_marker``) written once every signature is ready, which tells the next start its kernels are
        in the cache."""
        import torch._inductor.config as inductor_config

        options = INDUCTOR_OPTIONS if options is None else options
        keep_tracing_to_its_thread()
        self._compiled, self._keys, self.state = None, set(), "compiling"
        t0 = time.perf_counter()
        hits_before, cached_before = _cache_counts()
        gap = 0.0
        try:
            self.math_attention = math_attention and use_math_attention(plain, examples)
            compiled, run_only = torch.compile(plain, dynamic=False), torch._dynamo.run(plain)

            def serve(*inputs):
                return self.call(run_only, *inputs)

            for example in examples:
                with inductor_config.patch(**options), torch.inference_mode():
                    got = self.call(compiled, *example)
                    want = self.call(self.eager, *example)
                    # Run-only falls back to the uncompiled copy, silently, where the guards do not hold: the
                    # served call must give the compiled code's very bits, or this shape is not served.
                    served = serve(*example)
                scale = want.float().abs().max().clamp(min=1e-6)
                gap = max(gap, float((got.float() - want.float()).abs().max() / scale))
                if not gap <= AGREEMENT:
                    break
                if not torch.equal(served, got):
                    raise RuntimeError("the served call did not run the compiled code (its guards failed)")
                with self._lock:
                    if self.state != "compiling":  # a served call failed meanwhile: stay off
                        return
                    self._keys.add(_signature(*example))
                    self._compiled = serve
        except Exception:
            log.exception("compiling the %s failed; serving eager", self.name)
            self._disable()
            return
        self.compile_seconds = time.perf_counter() - t0
        hits, cached = _cache_counts()
        self.cached_graphs = hits - hits_before
        if not gap <= AGREEMENT:
            log.warning("compiled %s differs from eager by %.3f (relative); serving eager", self.name, gap)
            self._disable()
            return
        with self._lock:
            if self.state != "compiling":
                return
            self.state = "ready"
        if marker is not None:
            self._write_marker(marker, cacheable=cached - cached_before >= len(examples))
        log.info(
            "compiled %s ready for %d input shapes in %.0f s, %d graphs from the cache "
            "(relative gap to eager %.4f, %s attention)",
            self.name,
            len(examples),
            self.compile_seconds,
            self.cached_graphs,
            gap,
            "math" if self.math_attention else "SDPA",
        )

    def _write_marker(self, marker: Path, cacheable: bool) -> None:
        """The note for the next start, only where inductor could store every graph; a failure to write it
        costs the next start a background compile, nothing more."""
        try:
            if not cacheable:
                marker.unlink(missing_ok=True)
                log.info(
                    "inductor could not cache the compiled %s: the next start compiles it again", self.name
                )
                return
            marker.parent.mkdir(parents=True, exist_ok=True)
            note = {"compile_seconds": round(self.compile_seconds, 1), "cached_graphs": self.cached_graphs}
            marker.write_text(json.dumps(note) + "\n")
        except OSError as err:
            log.warning("could not write the compile note %s (%s)", marker, err)


class CompiledUNet(CompiledModel):
    """A UNet called like ``unet(sample, t, encoder_hidden_states)``, returning the prediction tensor."""

    name = "UNet"

    @staticmethod
    def call(module, sample, timestep, encoder_hidden_states) -> torch.Tensor:
        return module(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


class LatentDecoder(torch.nn.Module):
    """An autoencoder's decode as a module of its own (latents -> pixels), so that it compiles alone."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


class CompiledDecoder(CompiledModel):
    """An autoencoder's decode (``LatentDecoder``): latents in, pixels out."""

    name = "decoder"


@dataclass
class CompileJob:
    """One model to compile: its runner, the unpacked copy to compile, the example inputs of the signatures to
    serve compiled, and the cache note (``compile_marker``) of a finished compile."""

    runner: CompiledModel
    plain: torch.nn.Module
    examples: list[tuple[torch.Tensor, ...]]
    marker: Path | None = None

    @property
    def cached(self) -> bool:
        """Whether an earlier start on this machine class left its kernels in the cache."""
        return self.marker is not None and self.marker.is_file()

    def run(self) -> None:
        self.runner.compile(self.plain, self.examples, marker=self.marker)


def compile_in_background(jobs: list[CompileJob]) -> threading.Thread | None:
    """Compile ``jobs`` one after another on a thread at the lowest OS priority: requests served meanwhile
    (eager) keep the cores, and the compile uses what they leave (its C++ compiler processes inherit the
    priority). One at a time: two compiles side by side on two cores would slow each other and the requests."""
    if not jobs:
        return None
    for job in jobs:
        job.runner.state = "compiling"  # at once, before the thread gets going
    # The compiled code guards on the thread count, which OpenMP keeps per thread: the serving thread's.
    threads = torch.get_num_threads()

    def compile_politely() -> None:
        lowest_priority()
        torch.set_num_threads(threads)
        for job in jobs:
            job.run()

    thread = threading.Thread(target=compile_politely, name="aigc-compile", daemon=True)
    thread.start()
    return thread


def lowest_priority() -> None:
    """Nice 19 for the calling thread (Linux schedules threads separately); elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as err:
        log.info("could not lower the compile thread's priority (%s)", err)
