"""What every notebook check is built from: the ``@exercise`` marker (student code, or the
reference answer with ``MOEFM_LAB_SOLUTIONS=1``), calling the student's function with a hint
when it fails, and comparing its output with the expected one and with the usual wrong answers.
The checks themselves, one per exercise, are :mod:`labs.checks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

SOLUTIONS_ENV = "MOEFM_LAB_SOLUTIONS"
F = TypeVar("F", bound=Callable[..., Any])


def solutions_enabled() -> bool:
    """True when ``MOEFM_LAB_SOLUTIONS`` is set to anything but ``""``, ``0``, ``false``, ``no``."""
    return os.environ.get(SOLUTIONS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def exercise(fn: F) -> F:
    """Mark ``fn`` as the answer to a notebook exercise.

    Returns ``fn`` itself, so the notebook uses the student's code; with ``MOEFM_LAB_SOLUTIONS=1``
    it returns the function of the same name from :mod:`labs.solutions` instead.
    """
    if not solutions_enabled():
        return fn
    from labs import solutions

    try:
        return getattr(solutions, fn.__name__)
    except AttributeError as err:
        raise AttributeError(f"labs.solutions has no solution named {fn.__name__!r}") from err


# ---- helpers of the checks ------------------------------------------------------------------


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "your function")


def call_student(fn: Callable[..., Any], *args: Any, hint: str = "") -> Any:
    """Call the student's function; an unwritten exercise or a crash becomes an AssertionError."""
    try:
        return fn(*args)
    except NotImplementedError as err:
        raise AssertionError(
            f"{fn_name(fn)} is not written yet: replace `raise NotImplementedError` in the "
            "exercise cell with your code, run that cell, then this one"
        ) from err
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        raise AssertionError(
            f"{fn_name(fn)} raised {type(err).__name__}: {err}"
            + (f"\nHint: {hint}" if hint else "")
        ) from err


def as_tensor_of(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (int, float)):
        return torch.tensor(float(x))
    raise AssertionError(f"{what} must be a torch.Tensor, got {type(x).__name__}")


Mistake = tuple[str, torch.Tensor]


def compare(
    mine: Any,
    ref: torch.Tensor,
    what: str,
    *,
    mistakes: Sequence[Mistake] = (),
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Assert ``mine`` equals ``ref``; if not, name the first known mistake it matches."""
    mine = as_tensor_of(mine, what).detach().to(torch.float64)
    ref = ref.detach().to(torch.float64)
    if tuple(mine.shape) != tuple(ref.shape):
        raise AssertionError(
            f"{what} has shape {tuple(mine.shape)}, expected {tuple(ref.shape)}"
            + (f"\nHint: {hint}" if hint else "")
        )
    if not torch.isfinite(mine).all():
        raise AssertionError(
            f"{what} holds NaN or inf values" + (f"\nHint: {hint}" if hint else "")
        )
    if torch.allclose(mine, ref, atol=atol, rtol=rtol):
        return
    for message, wrong in mistakes:
        wrong = wrong.detach().to(torch.float64)
        if wrong.shape == mine.shape and torch.allclose(mine, wrong, atol=atol, rtol=rtol):
            raise AssertionError(f"{what} is wrong: {message}")
    err = float((mine - ref).abs().max())
    i = int((mine - ref).abs().flatten().argmax())
    raise AssertionError(
        f"{what} differs from the library by up to {err:.3g} (one entry: yours "
        f"{float(mine.flatten()[i]):.5g}, library {float(ref.flatten()[i]):.5g})"
        + (f"\nHint: {hint}" if hint else "")
    )


def passed(message: str) -> None:
    print(f"passed: {message}")
