"""Argument checks for the whole package: one rule per kind of value, with SPEC §8.3's error types.

Every public argument that takes a count, a real number, a flag or one of a few strings goes
through this module, so ``10.0``, ``np.int64(3)`` or ``True`` get the same answer wherever they
are passed. The rules (`tests/test_validate.py` pins this table):

===============================  ============  ============  =========  ==========
given                            count         real          flag       choice
===============================  ============  ============  =========  ==========
``3``, ``np.int64(3)``           ``3``         ``3.0``       TypeError  TypeError
``2.5``, ``np.float32(2.5)``     ValueError    ``2.5``       TypeError  TypeError
``10.0``, ``1e5`` (integral)     ValueError    ``10.0``      TypeError  TypeError
``True``, ``np.True_``           ValueError    ValueError    ``True``   TypeError
``nan``                          ValueError    ValueError    TypeError  TypeError
``inf``                          ValueError    ValueError    TypeError  TypeError
``"3"``, ``None``, ``[3]``       TypeError     TypeError     TypeError  TypeError
a str that is not a choice       TypeError     TypeError     TypeError  ValueError
===============================  ============  ============  =========  ==========

- A *number* is a Python or NumPy real number, or a 0-d real tensor (read once, when the
  argument is checked). Anything else is a ``TypeError``: the wrong kind of thing.
- A bool is never a number. Python's ``bool`` is an ``int``, so ``True`` is a number whose value
  is refused: a ``ValueError``, as SPEC §1 says for ``epochs``.
- A *count* is an integral number. A float is refused even when it is integral (``10.0``): the
  caller meant an integer and may have computed a fraction. ``integral_float=True`` accepts
  integral floats for an argument whose users write them (``num_thresholds=1e5``, as R luz's
  tests pass it).
- NaN is never a real; infinities are accepted only with ``finite=False``. Values out of range
  are ``ValueError``\\ s.
- ``wrong_type=ValueError`` makes a non-number a ``ValueError`` too, for the two arguments whose
  SPEC section makes every bad value one: ``epochs`` (§1) and the ``valid_data`` fraction (§8.2).
- A *flag* is a Python or NumPy bool. A *choice* is a str among a fixed few.

Messages read ``"`<argument>` must be <expected>, got <value> (<type>). <hint>"``: the argument,
what is allowed, what was given and what to do. None of these checks runs per batch.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60  # show the value, not a page of it


def describe(value: object) -> str:
    """``value`` as messages show it: its (shortened) repr and its type, e.g. ``'3' (str)``."""
    cls = type(value)
    module = cls.__module__.partition(".")[0]
    name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    return f"{_REPR.repr(value)} ({name})"


def invalid(
    argument: str, expected: str, value: object, hint: str = "", *, error: type[Exception] = ValueError
) -> Exception:
    """The exception for ``value`` given as ``argument``, in the one message format.

    Args:
        argument: the argument's name as the user writes it (``"epochs"``, ``"ctx.iter"``).
        expected: what is allowed, after "must be" (``"a positive integer"``).
        value: what was given.
        hint: what to do, one or two sentences (optional).
        error: the exception type: ``TypeError`` for the wrong kind of thing, ``ValueError``
            for a wrong value (SPEC §8.3).

    Returns:
        The exception, for the caller to ``raise`` (so type checkers see the raise).
    """
    message = f"`{argument}` must be {expected}, got {describe(value)}."
    return error(f"{message} {hint}" if hint else message)


def is_flag(value: object) -> bool:
    """Whether ``value`` is a flag: a Python or NumPy bool."""
    return isinstance(value, bool | np.bool_)


def _join(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


def _number(
    value: object, argument: str, expected: str, hint: str, wrong_type: type[Exception]
) -> int | float:
    """``value`` as a Python int or float, or the error the rules give a bool or a non-number."""
    is_bool = is_flag(value)
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        is_bool = value.dtype == torch.bool
        if not is_bool and not value.is_complex():
            number: int | float = value.item()  # one host read, when the argument is checked
            return number
    if is_bool:
        raise invalid(argument, expected, value, _join("A bool is not a number here.", hint))
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str) and _parses_as_number(value):
        hint = _join(f"Pass the number {value.strip()}, not a string.", hint)
    raise invalid(argument, expected, value, hint, error=wrong_type)


def is_number_text(value: object) -> bool:
    """Whether ``value`` is a str that reads as a number (``"0.2"``): a number passed as text."""
    return isinstance(value, str) and _parses_as_number(value)


def _parses_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count_words(minimum: int | None) -> str:
    if minimum is None:
        return "an integer"
    if minimum == 0:
        return "a non-negative integer"
    if minimum == 1:
        return "a positive integer"
    return f"an integer of at least {minimum}"


def _count(
    value: object,
    argument: str,
    expected: str,
    minimum: int | None,
    integral_float: bool,
    wrong_type: type[Exception],
    hint: str,
) -> int:
    number = _number(value, argument, expected, hint, wrong_type)
    if isinstance(number, float):
        if not number.is_integer():  # NaN and infinities included
            raise invalid(argument, expected, value, hint)
        if not integral_float:
            raise invalid(argument, expected, value, _join(f"Pass the integer {int(number)}.", hint))
        number = int(number)
    if minimum is not None and number < minimum:
        raise invalid(argument, expected, value, hint)
    return number


def check_count(
    value: object,
    argument: str,
    *,
    minimum: int | None = 0,
    integral_float: bool = False,
    wrong_type: type[Exception] = TypeError,
    hint: str = "",
) -> int:
    """``value`` as an int of at least ``minimum``: Python and NumPy integers, 0-d integer tensors.

    Args:
        value: what the user passed.
        argument: its name, for the message.
        minimum: the smallest allowed value (``None``: any integer).
        integral_float: also accept integral floats (``1e5``); see the module docstring.
        wrong_type: the exception for a non-number (``ValueError`` only where SPEC says so).
        hint: what to do, appended to the message.

    Raises:
        TypeError: ``value`` is not a number (``wrong_type`` if given).
        ValueError: a bool, a non-integral or (without ``integral_float``) a float, or a value
            below ``minimum``.
    """
    if type(value) is int and (minimum is None or value >= minimum):
        return value  # the common case, without the checks below
    expected = _count_words(minimum)
    return _count(value, argument, expected, minimum, integral_float, wrong_type, hint)


def check_optional_count(
    value: object,
    argument: str,
    *,
    minimum: int | None = 0,
    integral_float: bool = False,
    hint: str = "",
) -> int | None:
    """``None``, or ``value`` checked by `check_count`."""
    if value is None:
        return None
    expected = f"None or {_count_words(minimum)}"
    return _count(value, argument, expected, minimum, integral_float, TypeError, hint)


def _real_words(
    minimum: float | None, maximum: float | None, above: float | None, below: float | None, finite: bool
) -> str:
    low, low_open = (above, True) if above is not None else (minimum, False)
    high, high_open = (below, True) if below is not None else (maximum, False)
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    words = "a finite number" if finite else "a number"
    if low is not None:
        return f"{words} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{words} {'<' if high_open else '<='} {high}"
    return words


def _real(
    value: object,
    argument: str,
    expected: str,
    bounds: tuple[float | None, float | None, float | None, float | None],
    finite: bool,
    wrong_type: type[Exception],
    hint: str,
) -> float:
    try:
        number = float(_number(value, argument, expected, hint, wrong_type))
    except OverflowError:  # an int too large for a float
        raise invalid(argument, expected, value, hint) from None
    minimum, maximum, above, below = bounds
    if math.isnan(number):
        raise invalid(argument, expected, value, _join("NaN is not allowed.", hint))
    if (
        (finite and math.isinf(number))
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
        or (above is not None and number <= above)
        or (below is not None and number >= below)
    ):
        raise invalid(argument, expected, value, hint)
    return number


def check_real(
    value: object,
    argument: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    finite: bool = True,
    wrong_type: type[Exception] = TypeError,
    hint: str = "",
) -> float:
    """``value`` as a float: Python and NumPy real numbers and 0-d real tensors.

    Args:
        value: what the user passed.
        argument: its name, for the message.
        minimum: the smallest allowed value (inclusive).
        maximum: the largest allowed value (inclusive).
        above: a strict lower bound (``value > above``), instead of ``minimum``.
        below: a strict upper bound (``value < below``), instead of ``maximum``.
        finite: refuse infinities (NaN is always refused).
        wrong_type: the exception for a non-number (``ValueError`` only where SPEC says so).
        hint: what to do, appended to the message.

    Raises:
        TypeError: ``value`` is not a number (``wrong_type`` if given).
        ValueError: a bool, NaN, an infinity (with ``finite``) or a value out of range.
    """
    expected = _real_words(minimum, maximum, above, below, finite)
    return _real(value, argument, expected, (minimum, maximum, above, below), finite, wrong_type, hint)


def check_optional_real(
    value: object,
    argument: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    finite: bool = True,
    hint: str = "",
) -> float | None:
    """``None``, or ``value`` checked by `check_real`."""
    if value is None:
        return None
    expected = f"None or {_real_words(minimum, maximum, above, below, finite)}"
    return _real(value, argument, expected, (minimum, maximum, above, below), finite, TypeError, hint)


def check_flag(value: object, argument: str, *, hint: str = "") -> bool:
    """``value`` as a bool: ``True`` or ``False``, NumPy bools included.

    Raises:
        TypeError: anything else (``1``, ``"yes"``, ``None``): a truthy value would silently
            turn the option on.
    """
    if not is_flag(value):
        raise invalid(argument, "True or False", value, hint, error=TypeError)
    return bool(value)


def check_optional_flag(value: object, argument: str, *, hint: str = "") -> bool | None:
    """``None``, or ``value`` as a bool (see `check_flag`)."""
    if value is None:
        return None
    if not is_flag(value):
        raise invalid(argument, "True, False or None", value, hint, error=TypeError)
    return bool(value)


def check_choice(value: object, argument: str, choices: Sequence[str], *, hint: str = "") -> str:
    """``value``, which must be one of the strings ``choices`` (exactly, case included).

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: another str; the message suggests the closest choice.
    """
    expected = f"one of {', '.join(map(repr, choices))}"
    if not isinstance(value, str):
        raise invalid(argument, expected, value, hint, error=TypeError)
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        raise invalid(argument, expected, value, _join(f"Did you mean {close[0]!r}?" if close else "", hint))
    return str(value)


def normalize_optimizers(value: object) -> dict[str, torch.optim.Optimizer]:
    """Turn an optimizer or a mapping of them into ``{name: optimizer}``, validating both."""
    if isinstance(value, torch.optim.Optimizer):
        return {"opt": value}
    if not isinstance(value, Mapping):
        raise TypeError(
            "Expected a torch.optim.Optimizer or a dict of named optimizers, "
            f"got {type(value).__name__}. Return one from `set_optimizers` or pass `optimizer=`."
        )
    result: dict[str, torch.optim.Optimizer] = {}
    for name, opt in value.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"Optimizer names must be non-empty strings, got {name!r}.")
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"Expected a torch.optim.Optimizer for optimizer {name!r}, got {type(opt).__name__}."
            )
        result[name] = opt
    if not result:
        raise ValueError("The dict of optimizers is empty: return at least one optimizer.")
    return result


def check_output_file(path: Path, argument: str, *, shown: str, directory_hint: str = "") -> None:
    """Check that a file can be written at ``path`` (a later write would fail), reading the
    file system only: nothing is created.

    Args:
        path: the file to be written (its parents may not exist yet).
        argument: the argument's name, for the message.
        shown: the value as the user gave it (a template, a ``~`` path).
        directory_hint: what to do when ``path`` is an existing directory.

    Raises:
        ValueError: ``path`` is an existing directory, or lies under an existing file.
        PermissionError: the nearest existing directory above it is not writable.
    """
    if path.is_dir():
        hint = directory_hint or "Name a file inside it."
        raise ValueError(f"`{argument}` {shown!r} is an existing directory, not a file. {hint}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise ValueError(
            f"`{argument}` {shown!r} lies under {str(ancestor)!r}, which is a file, not a "
            "directory. Choose a path whose parent directories are directories (or do not exist yet)."
        )
    if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(
            f"`{argument}` {shown!r} cannot be written: the directory {str(ancestor)!r} is not "
            "writable. Choose a writable directory, or change its permissions."
        )
