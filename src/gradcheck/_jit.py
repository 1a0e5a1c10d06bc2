"""The one place numba options are decided.

Kernels in ``_kernels.py`` are plain Python functions; this module turns them into compiled
dispatchers on first use, never at import. ``fastmath`` stays off everywhere: finite
differences live on exact cancellation and the checker must see every NaN.

Our own kernels take only arrays and scalars, so their machine code is cached on disk
(``cache=True``) and later processes load it instead of compiling. When no cache location is
writable (a read-only install), numba refuses at decoration time; we then compile without a
cache rather than fail.
"""

from __future__ import annotations

import functools
import os

# Set GRADCHECK_NUMBA_CACHE=0 to keep numba from writing cache files.
CACHE = os.environ.get("GRADCHECK_NUMBA_CACHE", "1") != "0"


def numba_module():
    """Import numba on demand, so ``import gradcheck`` stays cheap."""
    import numba

    return numba


@functools.cache
def compiled(name: str, signature: str | None = None, parallel: bool = False):
    """Return the kernel ``name`` (of ``_kernels`` or ``_norm_kernel``) compiled here.

    ``signature`` names one of the signatures built in ``_kernels.signature``; with it the
    kernel is compiled eagerly for exactly that type (so it can be cached even when it takes
    a user function as a first-class argument), without it lazily for whatever it is given.
    """
    numba = numba_module()
    from . import _kernels, _norm_kernel

    module = _norm_kernel if hasattr(_norm_kernel, name) else _kernels
    py_func = getattr(module, name)
    sig = _kernels.signature(signature) if signature else None
    options = {"nogil": True, "parallel": parallel, "fastmath": False, "error_model": "numpy"}
    try:
        kernel = _decorate(numba, py_func, sig, options, cache=CACHE)
    except RuntimeError:
        # "cannot cache function ...: no locator available": a read-only install.
        kernel = _decorate(numba, py_func, sig, options, cache=False)
    _built.add((name, signature))
    return kernel


_built: set[tuple[str, str | None]] = set()


def is_compiled(name: str, signature: str | None = None) -> bool:
    """True when ``compiled(name, signature, ...)`` has already been built in this process."""
    return (name, signature) in _built


def _decorate(numba, py_func, sig, options, *, cache):
    if sig is None:
        return numba.njit(cache=cache, **options)(py_func)
    return numba.njit(sig, cache=cache, **options)(py_func)


def is_jitted(f) -> bool:
    """True when ``f`` is a numba dispatcher (checked without importing numba)."""
    module = type(f).__module__ or ""
    if not module.startswith("numba"):
        return False
    return numba_module().extending.is_jitted(f)


def num_threads() -> int:
    return numba_module().get_num_threads()
