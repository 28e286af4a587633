"""Step-based epochs (``fit(..., steps_per_epoch=n)``): each epoch takes the next ``n`` batches
of the training loader, which continues where the previous epoch stopped and starts a new
pass when it is exhausted.

Pass ``p`` (1-based, counted over the whole fit) is drawn as a pass of an ordinary fit is: a
shuffling sampler draws its order when the pass starts (from the global RNG, or the sampler's
own generator), and a `DistributedSampler` gets ``set_epoch(p)`` first. Without
``steps_per_epoch`` pass ``p`` is epoch ``p``, so both conventions agree.

Exact resuming: the position (passes started, batches taken from the current one) and the
random state captured just before the current pass began are state for a checkpoint. A resumed
fit rebuilds the pass under that random state, then puts the run's own state back. For a
`DataLoader` with a batch sampler (map-style data) the skipped batches are skipped at the
batch-sampler level (`SkipBatches`): their indices are drawn, their samples are never loaded.
Any other loader (an `IterableDataset`, a custom iterable) is replayed: the skipped batches
are fetched and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, Sampler

from luz._dist.sharding import loader_options, shard_sampler
from luz._inmemory import InMemoryLoader

Capture = Callable[[], Any]
Restore = Callable[[Any], None]


class SkipBatches(Sampler[Any]):
    """A batch sampler that yields ``inner``'s batches after its first ``skip`` ones.

    The skip happens when the first batch is asked for, or at `prime` (whichever comes first),
    so a shuffling sampler draws its order at the same point of the random stream as a fresh
    pass of ``inner`` does: after the loader's own draws when its iterator is made.
    """

    def __init__(self, inner: Iterable[Any], skip: int) -> None:
        self.inner = inner
        self.skip = skip
        self._current: _Skipping | None = None

    def __iter__(self) -> Iterator[Any]:
        self._current = _Skipping(self.inner, self.skip)
        return self._current

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)  # type: ignore[arg-type]

    def prime(self) -> None:
        """Do the skip of the iterator made last, now (no-op when done or none was made)."""
        if self._current is not None:
            self._current.prime()


class _Skipping(Iterator[Any]):
    def __init__(self, inner: Iterable[Any], skip: int) -> None:
        self._inner = inner
        self._skip = skip
        self._iterator: Iterator[Any] | None = None

    def prime(self) -> None:
        if self._iterator is None:
            self._iterator = iter(self._inner)
            for _ in range(self._skip):
                if next(self._iterator, _END) is _END:
                    break

    def __next__(self) -> Any:
        self.prime()
        return next(self._iterator)  # type: ignore[arg-type]


_END = object()


def _rebuild(loader: Any, skip: int) -> tuple[Iterable[Any], SkipBatches] | None:
    # The same loader (dataset, options, the same batch sampler object), skipping ``skip``
    # batches at the batch-sampler level; None when ``loader`` is not such a DataLoader. An
    # in-memory loader stays one: the rest of the pass is gathered as fast as a fresh pass.
    if isinstance(loader, InMemoryLoader):
        skipper = SkipBatches(loader.index_batches, skip)
        return loader.with_index_batches(skipper), skipper
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    if loader.batch_sampler is None:
        return None
    skipper = SkipBatches(loader.batch_sampler, skip)
    return DataLoader(loader.dataset, batch_sampler=skipper, **loader_options(loader)), skipper


class TrainStream:
    """The training batches of a fit with ``steps_per_epoch``: `epoch` gives the next ``steps``
    batches of ``loader``, passes following each other.

    Args:
        loader: the training loader as the loop iterates it (batches on the device).
        steps: batches per epoch.
        capture: returns the run's random state (what a checkpoint holds).
        restore: puts a state `capture` returned back.
        unwrap: the user's loader behind ``loader`` (its sampler, its batch sampler).
        wrap: makes an iterable of ``loader``'s kind around an iterable of the user's batches
            (e.g. moving each batch to the device).
    """

    def __init__(
        self,
        loader: Iterable[Any],
        steps: int,
        *,
        capture: Capture,
        restore: Restore,
        unwrap: Callable[[Any], Any],
        wrap: Callable[[Iterable[Any]], Iterable[Any]],
    ) -> None:
        self.loader = loader
        self.steps = steps
        self.passes = 0
        """Passes started so far (the current one is pass ``passes``)."""
        self.taken = 0
        """Batches taken from the current pass."""
        self._capture, self._restore = capture, restore
        self._unwrap, self._wrap = unwrap, wrap
        self._iterator: Iterator[Any] | None = None
        self._pass_state: Any = None

    def epoch(self) -> EpochBatches:
        """The batches of one epoch: an iterable of length ``steps``."""
        return EpochBatches(self)

    def next_batch(self) -> Any:
        """The next training batch, starting a new pass when the current one is exhausted.

        Raises:
            ValueError: a new pass yields no batch at all.
        """
        if self._iterator is None:
            self._iterator = self._resume() if self.taken else self._start_pass()
        batch = next(self._iterator, _END)
        if batch is _END:
            self._iterator = self._start_pass()
            batch = next(self._iterator, _END)
            if batch is _END:
                raise ValueError(
                    "The training data produced no batches. With the default drop_last=True a "
                    "dataset smaller than batch_size yields none: pass more data, a smaller "
                    "batch_size, or dataloader_options={'drop_last': False}."
                )
        self.taken += 1
        return batch

    def _start_pass(self) -> Iterator[Any]:
        self.passes += 1
        self.taken = 0
        self._set_sampler_epoch()
        self._pass_state = self._capture()
        return iter(self.loader)

    def _set_sampler_epoch(self) -> None:
        sampler = shard_sampler(self._unwrap(self.loader))
        if sampler is not None:
            sampler.set_epoch(self.passes)

    def _resume(self) -> Iterator[Any]:
        # Pass ``passes`` as it began, with its first ``taken`` batches skipped; the run's
        # random state is put back afterwards.
        now = self._capture()
        try:
            self._restore(self._pass_state)
            self._set_sampler_epoch()
            rebuilt = _rebuild(self._unwrap(self.loader), self.taken)
            if rebuilt is None:  # replay: fetch and drop the batches taken before
                iterator = iter(self.loader)
                for _ in range(self.taken):
                    next(iterator, None)
                return iterator
            skipping_loader, skipper = rebuilt
            inner = iter(skipping_loader)  # the loader's own draws (worker seeds), then ...
            skipper.prime()  # ... the sampler's, as in a fresh pass
            return iter(self._wrap(inner))
        finally:
            self._restore(now)

    def state_dict(self) -> dict[str, Any]:
        """The position and the random state the current pass began with (plain containers)."""
        return {"passes": self.passes, "taken": self.taken, "pass_state": self._pass_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`: the next batch is the one after that position."""
        self.passes = int(state["passes"])
        self.taken = int(state["taken"])
        self._pass_state = state["pass_state"]
        self._iterator = None
        if self.taken and self._pass_state is None:
            raise ValueError("a stream position inside a pass needs the pass's random state")


class EpochBatches:
    """One epoch of a `TrainStream`: ``steps`` batches, ``len`` is ``steps``."""

    def __init__(self, stream: TrainStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[Any]:
        stream = self.stream
        for _ in range(stream.steps):
            yield stream.next_batch()

    def __len__(self) -> int:
        return self.stream.steps
