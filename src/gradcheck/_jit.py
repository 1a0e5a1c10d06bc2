"""The one place numba options are decided.

Kernels (``_kernels.py``, ``_norm_kernel.py``) are plain Python functions; this module turns
them into compiled dispatchers on first use, never at import. ``fastmath`` stays off
everywhere: finite differences live on exact cancellation and the checker must see every NaN.

Our kernels take only arrays, scalars and (``evaluate_flat``) a user function typed by its
signature rather than by its identity, so their machine code is cached on disk
(``cache=True``) and later processes load it instead of compiling. When no cache location is
writable (a read-only install), numba refuses at decoration time; we then compile without a
cache rather than fail.

A small first check does not wait for a compiler: a kernel with a plain numpy form
(``PLAIN``) runs in numpy until compiling pays (``PLAIN_ENTRIES``), or the kernel is
compiled in this process already. Compiling costs seconds, loading numba's cache a
fraction of one, even when numba itself is loaded (a user's jitted f); the stacks of a
small batched check cost microseconds in numpy.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import types
import weakref

import numpy as np

# Set GRADCHECK_NUMBA_CACHE=0 to keep numba from writing cache files.
CACHE = os.environ.get("GRADCHECK_NUMBA_CACHE", "1") != "0"

# kernel name -> module that defines it
KERNELS = {
    "evaluate_flat": "._kernels",
    "build_batch": "._kernels",
    "segment_norms": "._norm_kernel",
}

_built: set[tuple[str, bool]] = set()


def numba_module():
    """Import numba on demand, so ``import gradcheck`` stays cheap."""
    import numba

    return numba


def _build_batch(theta, idx, values, start, out):
    """``_kernels.build_batch`` in numpy, bit for bit: the copy is memory-bound either way
    (within 20% of the kernel's time on stacks of 100,000 columns).
    """
    count, n_values = out.shape[0], values.shape[1]
    q = np.arange(start, start + count)
    j = q // n_values
    out[:] = theta
    out[np.arange(count), idx[j]] = values[j, q - j * n_values]


# Kernels with a plain form that serves until compiling pays (see the module's docstring).
PLAIN = {"build_batch": _build_batch}
# Entries written by a plain form, in a process, past which compiling its kernel pays: the
# kernel saves at most a fifth of a memory-bound copy, about 0.2 s per 2**30 entries on
# this project's machine, against seconds to compile.
PLAIN_ENTRIES = 1 << 30


class _PlainUntilItPays:
    """``PLAIN[name]`` until it has written ``PLAIN_ENTRIES`` entries in this process (its
    last argument is the output), then the compiled kernel; the kernel at once when it is
    compiled already.
    """

    def __init__(self, name: str, parallel: bool) -> None:
        self.name, self.parallel, self.written = name, parallel, 0

    def __call__(self, *args):
        if is_compiled(self.name, self.parallel) or (
            self.written > PLAIN_ENTRIES and not jit_disabled()
        ):
            return compiled_kernel(self.name, self.parallel)(*args)
        self.written += args[-1].size
        return PLAIN[self.name](*args)


@functools.cache
def compiled(name: str, parallel: bool = False):
    """Return the kernel ``name``: compiled with the house options, or for a kernel with
    a plain form (``PLAIN``), a callable that uses it until numba is loaded.
    """
    if name in PLAIN:
        return _PlainUntilItPays(name, parallel)
    return compiled_kernel(name, parallel)


@functools.cache
def compiled_kernel(name: str, parallel: bool = False):
    """Return the kernel ``name`` compiled with the house options.

    The kernels that take the user's ``f`` (``evaluate_flat``) are compiled
    eagerly for their one signature, in which ``f`` is
    a first-class function ``float64(float64[::1])``: one machine code serves every ``f``
    and can be cached. The other kernels compile lazily for the arrays they are given.
    """
    numba = numba_module()
    py_func = getattr(importlib.import_module(KERNELS[name], __package__), name)
    sig = _SIGNATURES[name](numba) if name in _SIGNATURES else None
    options = {"nogil": True, "parallel": parallel, "fastmath": False, "error_model": "numpy"}
    try:
        kernel = _decorate(numba, py_func, sig, options, cache=CACHE)
    except RuntimeError:
        # "cannot cache function ...: no locator available": a read-only install.
        kernel = _decorate(numba, py_func, sig, options, cache=False)
    _built.add((name, parallel))
    return kernel


def is_compiled(name: str, parallel: bool = False) -> bool:
    """True when ``compiled(name, parallel)`` has already been built in this process."""
    return (name, parallel) in _built


def _evaluate_flat_signature(numba):
    t = numba.types
    flat = t.Array(t.float64, 1, "C")
    f_type = t.FunctionType(t.float64(flat))
    matrix = t.Array(t.float64, 2, "C")
    return t.void(f_type, flat, t.Array(t.int64, 1, "C"), matrix, matrix, t.int64)


# Kernels that take the user's f are compiled eagerly for one signature (see `compiled`).
_SIGNATURES = {
    "evaluate_flat": _evaluate_flat_signature,
}


def _decorate(numba, py_func, sig, options, *, cache):
    if sig is None:
        return numba.njit(cache=cache, **options)(py_func)
    return numba.njit(sig, cache=cache, **options)(py_func)


def jit_disabled() -> bool:
    """True under ``NUMBA_DISABLE_JIT=1``.

    numba.njit then returns plain Python functions and the kernels run as Python loops: how
    the test suite covers them line by line.
    """
    return os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def is_jitted(f) -> bool:
    """True when ``f`` is a numba dispatcher (checked without importing numba).

    With the JIT disabled, a plain Python function stands for one: that is what
    ``numba.njit`` gave.
    """
    module = type(f).__module__ or ""
    if not module.startswith("numba"):
        return jit_disabled() and isinstance(f, types.FunctionType)
    return numba_module().extending.is_jitted(f)


def return_type_name(f, x) -> str | None:
    """The return type of jitted ``f`` as compiled for an argument like ``x``, if it is."""
    compiled_for_x = f.overloads.get((_array_type(x.dtype, x.ndim, x.flags.c_contiguous),))
    return None if compiled_for_x is None else str(compiled_for_x.signature.return_type)


_ADDRESSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def first_class(f):
    """``f`` as the kernels take a first-class function most cheaply: its compiled address.

    Handing the dispatcher itself makes numba look its machine code up again on every
    kernel call (about 15 us); the address, found once per jitted f (and kept while f
    lives), spares that. When numba cannot give the address, the dispatcher serves.
    """
    try:
        return _ADDRESSES[f]
    except (KeyError, TypeError):
        pass
    found = _first_class(f)
    with contextlib.suppress(TypeError):  # f not weakly referable: found again next time
        _ADDRESSES[f] = found
    return found


def _first_class(f):
    numba = numba_module()
    t = numba.types
    sig = t.float64(t.Array(t.float64, 1, "C"))
    try:
        from numba.experimental import function_type

        address = function_type._get_wrapper_address(f, sig)
    except Exception:  # a private helper of numba's: if it moves, lose only the speed-up
        return f
    return _address_class()(f, address, sig)


@functools.cache
def _address_class():
    numba = numba_module()

    class CompiledAddress(numba.types.WrapperAddressProtocol):
        """A jitted f by the address of its compiled code.

        It refers to f weakly (the cache of these is keyed by f); whoever evaluates holds f,
        and so its code, alive.
        """

        def __init__(self, f, address, sig):
            self.f, self._address, self._sig = weakref.ref(f), address, sig

        def __wrapper_address__(self):
            return self._address

        def signature(self):
            return self._sig

    return CompiledAddress


@functools.cache
def _array_type(dtype, ndim: int, contiguous: bool):
    # What numba.typeof gives a writable aligned array, without its per-call cost.
    numba = numba_module()
    return numba.types.Array(numba.from_dtype(dtype), ndim, "C" if contiguous else "A")


def num_threads() -> int:
    return numba_module().get_num_threads()
