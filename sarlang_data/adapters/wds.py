"""The same rows as a ``webdataset.DataPipeline``, for training code built on webdataset.

:func:`pipeline` returns a :class:`SarlangPipeline` (a ``webdataset.DataPipeline``) whose
source stage is the stream :func:`sarlang_data.load_dataset` makes: the same shards and
filters, the same views (rows of the config), rank (when asked) then DataLoader-worker
splitting into row ranges that differ by at most one row (and ``equalize``), the same image decoding
and the same seeded, exactly resumable shuffle. Any webdataset stages follow it::

    import webdataset as wds
    from sarlang_data.wds import pipeline
    from sarlang_data.torch import collate

    pipe = pipeline("sarlang-1m", "vqa", split="train", shuffle_seed=0)
    pipe.append(wds.batched(32, collation_fn=collate))
    loader = wds.WebLoader(pipe, batch_size=None, num_workers=4)

Do not add ``wds.split_by_node`` or ``wds.split_by_worker``: the source has split already.
Our shards also stay readable by a bare ``webdataset.WebDataset(urls)`` (members
``{key}.json`` and ``{key}.png``/``.jpg``), without the views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..configs import DEFAULT_CONFIG

try:
    import webdataset as _wds
except ImportError:  # pragma: no cover - the test extra installs it
    _wds = None


def _need_webdataset() -> None:
    if _wds is None:  # pragma: no cover
        raise ImportError("sarlang_data.wds needs webdataset: pip install 'webdataset>=0.2.90' "
                          "(or the 'test' extra of sarlang-data)")


if _wds is not None:

    class SarlangPipeline(_wds.DataPipeline):
        """A ``webdataset.DataPipeline`` whose first stage is a sarlang_data stream.

        ``set_epoch``, ``state_dict`` and ``load_state_dict`` reach that stream, so epochs
        reshuffle and ``StatefulDataLoader`` resumes exactly, as long as the later stages
        hold no rows of their own across batches (``wds.shuffle`` does; use
        ``shuffle_seed`` instead).
        """

        @property
        def source(self) -> Any:
            """The stream the pipeline starts with."""
            return self.pipeline[0]

        def set_epoch(self, epoch: int) -> None:
            """Set the epoch of the stream (shard order and shuffle buffer draws)."""
            self.source.set_epoch(epoch)

        def state_dict(self) -> dict:
            """Return the stream's resume state."""
            return self.source.state_dict()

        def load_state_dict(self, state_dict: dict) -> None:
            """Resume the stream from ``state_dict`` at the next iteration."""
            self.source.load_state_dict(state_dict)


def pipeline(
    root: str = "sarlang-1m",
    config: str = DEFAULT_CONFIG,
    *,
    split: str = "train",
    cities: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
    decode: bool = True,
    chat_format: str | None = None,
    chat_group: str | None = None,
    max_turns: int | None = None,
    on_error: str = "raise",
    storage_options: Mapping[str, Any] | None = None,
    distributed: bool | tuple[int, int] | None = None,
    equalize: bool | str = False,
    shuffle_seed: int | None = None,
    buffer_size: int = 1000,
    stages: Iterable[Callable[[Any], Any]] = (),
) -> Any:
    """Return a ``webdataset.DataPipeline`` of a config's rows (see the module docstring).

    Args:
        root: the dataset: ``"sarlang-1m"``, a root path or URL, or ``"ORG/NAME"`` on the Hub.
        config: config name.
        split: ``train`` or ``test``.
        cities: keep these cities.
        tiers: keep these tiers.
        sources: keep these sources.
        decode: decode images to PIL (False keeps ``{"bytes", "path"}``).
        chat_format: chat rows of a text config (``trl``, ``llamafactory``; None: the
            config's default), as in :func:`sarlang_data.load_dataset`.
        chat_group: ``text`` or ``image``, as in :func:`sarlang_data.load_dataset`.
        max_turns: with ``chat_group="image"``, the most turns in one row.
        on_error: ``raise`` or ``skip`` corrupt samples.
        storage_options: fsspec options for the root.
        distributed: as in :func:`sarlang_data.load_dataset` (None: the whole split; True:
            this rank's rows, from torch.distributed or ``RANK``/``WORLD_SIZE``).
        equalize: as in :func:`sarlang_data.load_dataset`.
        shuffle_seed: shuffle shards and rows through a buffer from this seed and the epoch
            (None: no shuffling).
        buffer_size: rows in the shuffle buffer.
        stages: webdataset stages to append (``wds.batched(...)``, ``wds.map(...)``, ...).

    Returns:
        A :class:`SarlangPipeline`.

    Raises:
        ConfigError: bad names or options, as :func:`sarlang_data.load_dataset`.
        ManifestError: no dataset root at ``root``.

    """
    from .hf.load import load_dataset

    _need_webdataset()
    stream = load_dataset(root, config, split=split, streaming=True, cities=cities,
                          tiers=tiers, sources=sources, decode=decode, on_error=on_error,
                          storage_options=storage_options, chat_format=chat_format,
                          chat_group=chat_group, max_turns=max_turns,
                          distributed=distributed, equalize=equalize)
    if shuffle_seed is not None:
        stream = stream.shuffle(seed=shuffle_seed, buffer_size=buffer_size)
    return SarlangPipeline(stream, *stages)
