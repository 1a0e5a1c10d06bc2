"""Layout: flatten the user's parameters once into one contiguous buffer of named blocks.

Every block (``W1``, ``b1``, ...) is a view into the buffer with its own shape, so ``f`` sees
the user's structure while the engines perturb a single flat array in place. The caller's
arrays are copied once and never written to.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

# A path into the user's structure: dict keys and list/tuple positions.
Path = tuple[Any, ...]

_SUPPORTED = (np.dtype(np.float64), np.dtype(np.float32))


@dataclass(frozen=True)
class Block:
    """One parameter array: where it sits in the flat buffer and how to name its entries."""

    name: str
    path: Path
    shape: tuple[int, ...]
    offset: int
    dtype: np.dtype

    @functools.cached_property
    def size(self) -> int:
        return math.prod(self.shape)

    def entry_name(self, flat_index: int) -> str:
        """``"W1[3, 2]"`` for the entry at ``flat_index`` of the whole buffer."""
        if not self.shape:
            return self.name
        rest = int(flat_index) - self.offset
        # The common shapes first: a report names a dozen entries per check.
        if len(self.shape) == 1:
            return f"{self.name}[{rest}]"
        if len(self.shape) == 2:
            row, column = divmod(rest, self.shape[1])
            return f"{self.name}[{row}, {column}]"
        # C order, as np.unravel_index gives, in plain integers: numpy's per-call cost would
        # dominate.
        where = []
        for extent in reversed(self.shape):
            rest, i = divmod(rest, extent)
            where.append(i)
        return f"{self.name}[{', '.join(map(str, reversed(where)))}]"


@dataclass(frozen=True)
class Words:
    """How a layout's errors name the structure it lays out: the parameters of a check, or
    the output of a function whose VJP is checked.
    """

    subject: str  # "`params` holds no arrays"
    noun: str  # "should mirror params", "params has more"
    leaf: str  # "params `W` must be a numpy array of floats"
    part: str  # "but the parameter has shape (2, 3)"
    lone: bool  # a structure of one array names it (as `params`) in its errors


PARAMS = Words("`params`", "params", "params", "the parameter", lone=True)
OUTPUT = Words("the output", "the output", "output", "the output", lone=False)


@dataclass(frozen=True)
class Layout:
    """The blocks of a parameter structure and the skeleton to rebuild it from a buffer."""

    blocks: tuple[Block, ...]
    skeleton: Any  # the structure with each array replaced by its block index
    dtype: np.dtype

    n: int
    offsets: np.ndarray  # int64: block k is [offsets[k], offsets[k + 1]) of the buffer
    words: Words = PARAMS  # how its errors name what it lays out

    def block_of(self, flat_index: int) -> Block:
        k = int(np.searchsorted(self.offsets, flat_index, side="right")) - 1
        return self.blocks[k]

    def entry_name(self, flat_index: int) -> str:
        return self.block_of(flat_index).entry_name(flat_index)

    def structure(self, buffer: np.ndarray, batch: int | None = None) -> Any:
        """The user's structure whose arrays are views of ``buffer``.

        With ``batch``, ``buffer`` has shape ``(batch, n)`` and every block gains a leading
        batch axis.
        """
        views = []
        for b in self.blocks:
            if batch is None:
                views.append(buffer[b.offset : b.offset + b.size].reshape(b.shape))
            else:
                views.append(buffer[:, b.offset : b.offset + b.size].reshape((batch, *b.shape)))
        return _rebuild(self.skeleton, views)

    def flatten(self, tree: Any, *, what: str, dtype=np.float64) -> np.ndarray:
        """Copy the arrays of ``tree`` (mirroring the parameters) into a new flat array.

        Mapping keys may be the parameters' own keys or ``d``-prefixed ones (``dW1`` for
        ``W1``); extra keys are ignored. For structured parameters, ``tree`` may also be one
        1-D array of all ``n`` entries in the parameters' order (what a course's
        ``gradients_to_vector`` returns).
        """
        out = np.empty(self.n, dtype=dtype)
        if isinstance(tree, np.ndarray) and not isinstance(self.skeleton, _Leaf):
            if tree.ndim != 1 or tree.size != self.n:
                noun = self.words.noun
                raise TypeError(
                    f"`{what}` should mirror {noun}, or be one flat array of its {self.n:,} "
                    f"entries in the order of {noun}, but is ndarray of shape {tree.shape}"
                )
            out[:] = _as_real_array(tree, what=f"`{what}`", allow_int=True)
            return out
        keys = self._keys_by_parent()
        for b in self.blocks:
            leaf = _lookup(tree, b.path, what=what, params_keys=keys, noun=self.words.noun)
            arr = _as_real_array(leaf, what=f"{what} for `{b.name}`", allow_int=True)
            if arr.shape != b.shape:
                named = b.path or self.words.lone
                block = f" for block `{b.name}`" if named else ""
                raise ValueError(
                    f"`{what}`{block} has shape {arr.shape}, "
                    f"but {self.words.part} has shape {b.shape}"
                )
            out[b.offset : b.offset + b.size] = arr.reshape(-1)
        return out

    def _keys_by_parent(self) -> dict[Path, set]:
        """The parameters' own keys under each path (where ``dW`` is a block of its own)."""
        keys: dict[Path, set] = {}
        for b in self.blocks:
            for depth in range(len(b.path)):
                keys.setdefault(b.path[:depth], set()).add(b.path[depth])
        return keys


def leaves(tree: Any) -> list[tuple[str, Path, np.ndarray]]:
    """``(name, path, array)`` for each array of ``tree``, in layout order; nothing copied.

    Raises ``TypeError`` for a leaf that is not a float array (see ``build``).
    """
    found: list[tuple[str, Path, np.ndarray]] = []
    _walk(tree, "", (), found)
    return found


@dataclass(frozen=True)
class Group:
    """A top-level item of the parameters: what a monitor rotates over."""

    blocks: tuple[int, ...]  # the indices of its arrays among the layout's blocks
    size: int  # its entries in all


def groups(params: Any) -> dict[str, Group]:
    """Each top-level item of ``params`` (a single array is one), by name.

    Its blocks are counted in the order :func:`build` lays the leaves out (both walk
    :func:`leaves`), so the indices are those of the check's layout.
    """
    found_leaves = leaves(params)
    if isinstance(params, Mapping):
        tops = {key: str(key) for key in params}
    elif isinstance(params, (list, tuple)) and not _numbers(params):
        fields = getattr(params, "_fields", None)
        tops = {i: fields[i] if fields else f"[{i}]" for i in range(len(params))}
    else:
        tops = {None: "params"}
    if not tops:
        raise ValueError(f"`params` holds no blocks: {params!r}")
    found: dict[str, tuple[list[int], int]] = {name: ([], 0) for name in tops.values()}
    for k, (_, path, arr) in enumerate(found_leaves):
        name = tops[path[0] if path else None]
        indices, size = found[name]
        found[name] = ([*indices, k], size + arr.size)
    # A top-level item without arrays (an empty dict) has nothing to check.
    return {name: Group(tuple(ks), size) for name, (ks, size) in found.items() if ks}


def lookup(tree: Any, path: Path, *, what: str) -> Any:
    """The node at ``path`` of ``tree`` (which mirrors the parameters); ``dW1`` for ``W1``."""
    return _lookup(tree, path, what=what)


def as_real_array(value: Any, *, what: str) -> np.ndarray:
    """``value`` as a real array (ints allowed), or a ``TypeError`` naming ``what``."""
    return _as_real_array(value, what=what, allow_int=True)


def build(params: Any, *, words: Words = PARAMS) -> tuple[Layout, np.ndarray]:
    """Validate ``params`` and return its layout and a new flat buffer holding a copy.

    ``words`` name the structure in the errors (the parameters, or a function's output).
    """
    leaves: list[tuple[str, Path, np.ndarray]] = []
    skeleton = _walk(params, "", (), leaves, words.leaf)
    if not leaves:
        raise ValueError(f"{words.subject} holds no arrays: {_short(params)}")
    dtypes = {arr.dtype for _, _, arr in leaves}
    # One buffer dtype: float32 stays float32 only when every block is float32.
    dtype = np.dtype(np.float32) if dtypes == {np.dtype(np.float32)} else np.dtype(np.float64)
    blocks = []
    offset = 0
    for name, path, arr in leaves:
        blocks.append(Block(name, path, arr.shape, offset, arr.dtype))
        offset += arr.size
    if offset == 0:
        shapes = ", ".join(f"{name} {arr.shape}" for name, _, arr in leaves[:5])
        raise ValueError(
            f"{words.subject} holds no parameters to check: every array is empty ({shapes}"
            f"{', ...' if len(leaves) > 5 else ''})"
        )
    offsets = np.array([b.offset for b in blocks] + [offset], dtype=np.int64)
    layout = Layout(tuple(blocks), skeleton, dtype, offset, offsets, words)
    buffer = np.empty(offset, dtype=dtype)
    for b, (_, _, arr) in zip(blocks, leaves, strict=True):
        buffer[b.offset : b.offset + b.size] = arr.reshape(-1)
        bad = ~np.isfinite(buffer[b.offset : b.offset + b.size])
        if bad.any():
            where = b.offset + int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{words.subject} must be finite, but {b.entry_name(where)} = {buffer[where]!r}"
            )
    return layout, buffer


def _walk(tree: Any, name: str, path: Path, leaves: list, leaf: str = "params") -> Any:
    """The skeleton of ``tree``, its arrays appended to ``leaves``; ``leaf`` names an array
    in the errors ("params `W`").
    """
    if _numbers(tree):
        # A flat list of numbers is one vector, as scipy's x0 is: f receives a 1-D array.
        tree = np.array(tree, dtype=np.float64)
    if isinstance(tree, Mapping):
        return {
            key: _walk(value, _join(name, key), (*path, key), leaves, leaf)
            for key, value in tree.items()
        }
    if isinstance(tree, (list, tuple)):
        fields = getattr(tree, "_fields", None)  # a namedtuple: name blocks by field
        items = [
            _walk(
                value,
                _join(name, fields[i]) if fields else f"{name}[{i}]",
                (*path, i),
                leaves,
                leaf,
            )
            for i, value in enumerate(tree)
        ]
        return _same_kind(tree, items)
    arr = _as_real_array(tree, what=f"{leaf} `{name or 'params'}`", allow_int=False)
    leaves.append((name or "params", path, arr))
    return _Leaf(len(leaves) - 1)


def _numbers(tree: Any) -> bool:
    """A non-empty list (not a tuple: that is a structure of blocks) of plain real numbers."""
    return (
        type(tree) is list
        and bool(tree)
        and all(isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in tree)
    )


@dataclass(frozen=True)
class _Leaf:
    index: int


def _rebuild(skeleton: Any, views: list) -> Any:
    if isinstance(skeleton, _Leaf):
        return views[skeleton.index]
    if isinstance(skeleton, dict):
        return {key: _rebuild(value, views) for key, value in skeleton.items()}
    return _same_kind(skeleton, [_rebuild(value, views) for value in skeleton])


def _same_kind(like: list | tuple, items: list) -> list | tuple:
    if isinstance(like, list):
        return items
    if hasattr(like, "_fields"):
        return type(like)(*items)
    return tuple(items)


def _join(name: str, key: Any) -> str:
    return str(key) if not name else f"{name}.{key}"


def _lookup(
    tree: Any,
    path: Path,
    *,
    what: str,
    params_keys: Mapping[Path, set] | None = None,
    noun: str = "params",
) -> Any:
    """The node of ``tree`` at ``path``, a path into the parameters.

    ``params_keys`` (the parameters' keys under each path) tells a ``dW`` that is itself a
    parameter from the gradient of ``W``.
    """
    node = tree
    for depth, key in enumerate(path):
        where = "".join(f"[{k!r}]" for k in path[:depth])
        if isinstance(key, int) and isinstance(node, (list, tuple)):
            if key >= len(node):
                raise ValueError(f"`{what}`{where} has {len(node)} items; {noun} has more")
            node = node[key]
        elif isinstance(node, Mapping):
            alias = f"d{key}" if isinstance(key, str) else None
            if alias in (params_keys or {}).get(path[:depth], ()):
                alias = None  # `dW` is a parameter of its own here
            if key in node and alias in node and not _same(node[key], node[alias]):
                # Both spellings, with different values: taking either one silently could
                # check the wrong gradient (a stale `W1` beside a fresh `dW1`).
                raise ValueError(
                    f"`{what}`{where} has both {key!r} and {alias!r}, with different values; "
                    f"keep one of them (keys: {sorted(map(str, node))})"
                )
            if key in node:
                node = node[key]
            elif alias is not None and alias in node:
                node = node[f"d{key}"]
            else:
                alt = f" or {'d' + key!r}" if isinstance(key, str) else ""
                raise ValueError(
                    f"`{what}`{where} has no entry {key!r}{alt}; "
                    f"its keys are {sorted(map(str, node))}"
                )
        else:
            raise TypeError(f"`{what}`{where} should mirror {noun}, but is {describe(node)}")
    return node


def _same(a: Any, b: Any) -> bool:
    """Whether two gradient nodes hold the same values (the same object, or equal arrays)."""
    if a is b:
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:  # values numpy cannot compare (objects, strings): not the same
        return False


def _as_real_array(value: Any, *, what: str, allow_int: bool) -> np.ndarray:
    if isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, np.floating):
        arr = np.asarray(value)
    elif isinstance(value, Real) and not isinstance(value, (bool, np.bool_)):
        arr = np.asarray(value, dtype=np.float64)
    elif allow_int and isinstance(value, (np.generic, list)):
        arr = np.asarray(value)
    else:
        raise TypeError(
            f"{what} must be a numpy array of floats, got {type(value).__name__}: {_short(value)}"
        )
    kind = arr.dtype.kind
    if arr.dtype in _SUPPORTED or (allow_int and kind in "iuf"):
        return arr
    if arr.dtype in (np.dtype(np.float16),) or kind in "iub":
        hint = (
            "convert it with .astype(np.float64): finite differences in float16 or in "
            "integers cannot resolve a gradient"
        )
    elif kind == "c":
        hint = "complex parameters are not supported: pass real and imaginary parts as blocks"
    else:
        hint = "only float32 and float64 arrays can be checked"
    raise TypeError(f"{what} has dtype {arr.dtype}; {hint}")


def describe(value: Any) -> str:
    """What a value is, without its numbers: "tuple of 3 items (ndarray, ndarray, ndarray)"."""
    if isinstance(value, (list, tuple)):
        kinds = ", ".join(describe(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"{type(value).__name__} of {len(value)} item{'s' * (len(value) != 1)} ({kinds})"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {sorted(map(str, value))[:8]}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    return f"{type(value).__name__}: {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
