"""Re-raising errors with context (which callback, which metric) without changing their type."""

from __future__ import annotations


class CallbackError(RuntimeError):
    """An error raised inside a callback hook; the message names the callback and breakpoint.

    The raised object is also an instance of the original exception's class, so
    ``except ValueError`` still catches a ``ValueError`` raised in a hook. The original
    exception is chained as ``__cause__``.
    """


class MetricError(RuntimeError):
    """An error raised by a metric's ``update`` or ``compute``, naming the metric and the step.

    Like `CallbackError`, it is also an instance of the original exception's class.
    """


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
        namespace = {"__module__": original.__module__, "__str__": BaseException.__str__}
        return type(original.__name__, (base, original), namespace)
    except TypeError:  # incompatible layouts (e.g. OSError subclasses): keep the luz type
        return base


def rewrap(error: BaseException, message: str, base: type[Exception]) -> Exception:
    """Build an exception of type ``base`` (and of ``type(error)`` when possible) saying ``message``.

    The caller raises it ``from error`` so the original stays visible in the traceback.
    """
    text = f"{message}: {error}" if str(error) else message
    try:
        wrapped = _combined(base, type(error))(text)
        if str(wrapped) == text:
            return wrapped
    except Exception:  # some exception types cannot be built from a message alone
        pass
    return base(text)
