"""The command line's argument types: each parses one flag's text or says what it must be."""

from __future__ import annotations

import argparse

from ._options import parse_seed


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sample(text: str) -> int | float:
    """An int (how many coordinates) or a fraction in (0, 1]."""
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or a fraction in (0, 1], got {text!r}"
        )
    return value


def _tol(text: str) -> float | tuple[float, float]:
    """One threshold, or ``pass,fail``."""
    parts = [_positive_float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2 and parts[0] <= parts[1]:
        return (parts[0], parts[1])
    raise argparse.ArgumentTypeError(
        f"must be one number or pass,fail with pass <= fail, got {text!r}"
    )
