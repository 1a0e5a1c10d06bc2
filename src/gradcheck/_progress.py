"""Progress: a tqdm bar on stderr for checks long enough to want one (tqdm imported lazily)."""

from __future__ import annotations

import contextlib
import sys

# Show a progress bar by default when a check should take longer than this.
PROGRESS_SECONDS = 3.0


def wanted(progress: bool | None, per_call: float | None, expected: int) -> bool:
    """Whether to show a bar: as asked, else for long checks on a terminal with tqdm."""
    if progress is not None:
        return progress
    if per_call is None or per_call * expected < PROGRESS_SECONDS:
        return False
    return sys.stderr.isatty() and _has_tqdm()


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def bar(evaluator, show: bool, total: int):
    """While open, the evaluator's runs advance a bar of ``total`` coordinates."""
    if not show or total == 0:
        yield
        return
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ValueError("progress=True needs tqdm: pip install 'gradcheck[progress]'") from exc
    shown = tqdm(total=total, unit="coord", desc="gradcheck", file=sys.stderr)
    evaluator.tick = shown.update
    try:
        yield
    finally:
        evaluator.tick = None
        shown.close()
