"""The command line's argument types: each parses one flag's text or says what it must be.

Text is read here; the rules on the values are ``_options``'s, as for every door.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from . import _options
from ._options import parse_seed

T = TypeVar("T", int, float)


def _positive_float(text: str) -> float:
    return _parsed(text, float, _options.positive, "a positive number")


def _positive_int(text: str) -> int:
    return _parsed(text, int, _options.integer, "a positive integer")


def _parsed(text: str, parse: Callable[[str], T], rule: Callable[[str, T], object], what: str) -> T:
    """``text`` read by ``parse`` and held to ``_options``' ``rule``: argparse's error, in
    the words of ``what``, when either refuses it.
    """
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    try:
        rule("value", value)
    except ValueError:  # a number, shown as typed
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}") from None
    return value


def _seed(text: str) -> int:
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sample(text: str) -> int | float:
    """An int (how many coordinates) or a fraction in (0, 1]."""
    value: int | float
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
    try:
        _options.sample(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or a fraction in (0, 1], got {text!r}"
        ) from None
    return value


def _tol(text: str) -> float | tuple[float, float]:
    """One threshold, or ``pass,fail``."""
    parts = [_positive_float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0]
    try:
        if len(parts) == 2 and _options.tol((parts[0], parts[1])):
            return (parts[0], parts[1])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"must be one number or pass,fail with pass <= fail, got {text!r}"
    )
