"""Re-raising errors with context (which callback, which metric) without changing their type.

The errors `with_origin` builds survive `pickle` (a fit in a process pool reports the real
error, not a ``PicklingError``): type, message, and the original exception as ``__cause__``.
"""

from __future__ import annotations

import pickle
from typing import Any


def _reduce_with_origin(self: BaseException) -> tuple[Any, ...]:
    """``__reduce__`` of the errors made here: rebuild the (combined) type and keep the cause.

    Python pickles neither a class made at run time (pickle finds classes by name) nor
    ``__cause__``; this pickles the classes the type was made from and the cause instead.
    """
    types = tuple(t for t in _recipe(type(self)) if _pickles(t))  # drop classes pickle cannot find
    state = dict(vars(self))  # __notes__ and any attributes set on the error
    if self.__cause__ is not None and _pickles(self.__cause__):
        state["__cause__"] = self.__cause__  # BaseException.__setstate__ sets it back
    return _rebuild, (types or (RuntimeError,), self.args), state


def _recipe(cls: type) -> tuple[type, ...]:
    """The importable classes a combined type was made of, outermost first: the type of
    ``CallbackError`` around ``MetricError`` around ``ValueError`` gives all three."""
    parts: tuple[type, type] | None = getattr(cls, "_origin_types", None)
    return (cls,) if parts is None else (parts[0], *_recipe(parts[1]))


def _pickles(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # what pickle raises varies: PicklingError, AttributeError, TypeError
        return False
    return True


def _rebuild(types: tuple[type[Exception], ...], args: tuple[Any, ...]) -> Exception:
    """The unpickling side of `_reduce_with_origin`: the error's type made again from its parts."""
    cls = types[-1]
    for base in reversed(types[:-1]):
        cls = _combined(base, cls)
    try:
        return cls(*args)
    except Exception:  # the combined type built this message once; keep the luz type otherwise
        return types[0](*args)


class CallbackError(RuntimeError):
    """An error raised inside a callback hook; the message names the callback and breakpoint.

    The raised object is also an instance of the original exception's class, so
    ``except ValueError`` still catches a ``ValueError`` raised in a hook. The original
    exception is chained as ``__cause__``. It survives pickling (type, message and cause).
    """

    __reduce__ = _reduce_with_origin


class MetricError(RuntimeError):
    """An error raised by a metric's ``update`` or ``compute``, naming the metric and the step.

    Like `CallbackError`, it is also an instance of the original exception's class and
    survives pickling.
    """

    __reduce__ = _reduce_with_origin


_COMBINED: dict[tuple[type, type], type[Exception]] = {}


def _combined(base: type[Exception], original: type[BaseException]) -> type[Exception]:
    key = (base, original)
    if key not in _COMBINED:
        _COMBINED[key] = _combine(base, original)
    return _COMBINED[key]


def _combine(base: type[Exception], original: type[BaseException]) -> type[Exception]:
    if issubclass(original, base) or not issubclass(original, Exception):
        return base
    try:
        # BaseException's __str__: the message as given (KeyError would quote it, and types
        # such as UnicodeDecodeError would format fields that are not set here).
        namespace = {
            "__module__": original.__module__,
            "__str__": BaseException.__str__,
            "__reduce__": _reduce_with_origin,
            "_origin_types": (base, original),
        }
        return type(original.__name__, (base, original), namespace)
    except TypeError:  # a type that refuses subclasses, or a layout clash: keep the luz type
        return base


def with_origin(error: BaseException, message: str, base: type[Exception]) -> Exception:
    """An exception of type ``base`` (and of ``type(error)`` when possible) saying where it
    happened: ``"<message>: <error>"``.

    The caller raises it ``from error`` so the original stays visible in the traceback. The
    result pickles with its type, message and cause. Where Python cannot combine the two types
    (``OSError`` subclasses, exceptions that cannot be built from a message) it is a plain
    ``base``.

    Args:
        error: the exception that was raised.
        message: where it happened, e.g. ``"Error in callback X at breakpoint 'on_epoch_end'"``.
        base: the luz type to add, e.g. `CallbackError`.

    Example:
        >>> from luz.errors import CallbackError, with_origin
        >>> err = with_origin(ValueError("bad"), "Error in callback X", CallbackError)
        >>> isinstance(err, ValueError), isinstance(err, CallbackError), str(err)
        (True, True, 'Error in callback X: bad')
    """
    text = f"{message}: {error}" if str(error) else message
    try:
        wrapped = _combined(base, type(error))(text)
        if str(wrapped) == text:
            return wrapped
    except Exception:  # some exception types cannot be built from a message alone
        pass
    return base(text)
