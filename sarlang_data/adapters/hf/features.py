"""The ``datasets.Features`` of every config: one place for the column types of rows."""

from __future__ import annotations

from typing import Any

import datasets

from ...configs import Config, get_config
from ...format.codec import EXT as _PIXEL_EXT
from ...stream.views import Layout, layout_for

#: the path suffix of rows whose image is a pixel member (see sarlang_data.format.codec)
PIXEL_SUFFIX = "." + _PIXEL_EXT


# --------------------------------------------------------------------------- features


def _list(feature: Any, length: int = -1) -> Any:
    """Return a list feature for datasets 3.x (``Sequence``) and >= 4 (``List``)."""
    cls = getattr(datasets, "List", None)
    if cls is not None:
        return cls(feature, length=length)
    return datasets.Sequence(feature, length=length)


def features_for(config: Config | str, *, decode: bool = True,
                 layout: Layout | None = None) -> datasets.Features:
    """Return the ``datasets.Features`` of a config's rows.

    Args:
        config: a config or its name.
        decode: whether ``datasets.Image`` decodes images to PIL (False keeps
            ``{"bytes", "path"}``).
        layout: the row layout (:func:`sarlang_data.stream.views.layout_for`; None: the
            config's default).

    Returns:
        The features, columns in the order of :func:`sarlang_data.stream.views.columns`.

    Raises:
        ConfigError: an unknown config.

    """
    cfg = config if isinstance(config, Config) else get_config(config)
    lay = layout_for(cfg) if layout is None else layout
    string = datasets.Value("string")
    image = datasets.Image(decode=decode)
    # float64 like the records and the index, so streamed and prepared rows are equal
    f64 = datasets.Value("float64")
    bbox = _list(f64, length=4)
    common = {"image": image, "key": string, "city": string, "tier": string, "gsd_m": f64,
              "source": string, "split": string, "lat": f64, "lon": f64,
              "width": datasets.Value("int32"), "height": datasets.Value("int32")}
    if lay.chat:
        content: Any = string if lay.chat_format == "llamafactory" else [
            {"type": string, "text": string}]
        del common["image"]
        head = {"ids": [string]} if lay.group == "image" else {"id": string}
        tail = {} if lay.group == "image" else {"kind": string, "task": string}
        return datasets.Features({**head, "messages": [{"role": string, "content": content}],
                                  "images": [image], **common, **tail})
    if cfg.unit == "image":
        return datasets.Features({
            **common,
            "captions": [{"kind": string, "text": string, "kind_from": string}],
            "qa": [{"task": string, "question_type": string, "question": string,
                    "answer": string, "bbox": bbox, "task_from": string, "subset": string}],
        })
    if cfg.unit == "caption":
        extra = {"caption": string}
        if cfg.kind is None:
            extra["kind"] = string
        return datasets.Features({"id": string, **common, **extra})
    extra = {"question": string, "answer": string}
    if cfg.task is None:
        extra["task"] = string
    extra.update({"question_type": string, "bbox": bbox})
    return datasets.Features({"id": string, **common, **extra})


def _set_decode(feature: Any, enable: bool) -> Any:
    """Return ``feature`` with every ``datasets.Image`` in it set to decode or not."""
    if isinstance(feature, datasets.Image):
        return datasets.Image(mode=feature.mode, decode=enable)
    if isinstance(feature, list):
        return [_set_decode(f, enable) for f in feature]
    if isinstance(feature, dict):
        return {k: _set_decode(v, enable) for k, v in feature.items()}
    inner = getattr(feature, "feature", None)
    if inner is not None and isinstance(inner, (datasets.Image, list, dict)):
        return _list(_set_decode(inner, enable), getattr(feature, "length", -1))
    return feature


def _encoded(features: datasets.Features) -> datasets.Features:
    """Features of rows in their encoded form (images not decoded)."""
    return datasets.Features({k: _set_decode(v, False) for k, v in features.items()})
