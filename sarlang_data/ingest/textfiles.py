"""The release's text files: finding them, reading CSV and JSON rows, detecting columns."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ColumnError, ReleaseError
from .infer import _kind_label, _task_label
from .names import _IMAGE_EXTS, _norm, _walk

_TEXT_EXTS = (".csv", ".json", ".jsonl")
#: A CSV record spanning more physical lines than this is an unbalanced quote, not a field
#: with line breaks (no caption or question of the release runs over ten lines).
_MAX_RECORD_LINES = 10
#: Rows looked at to decide a column by content.
_SNIFF_ROWS = 500


# --------------------------------------------------------------------------- text files


@dataclass
class _TextFile:
    """A text file of the release and what its name says."""

    path: Path
    rel: str
    category: str  # "caption" | "vqa"
    split: str
    subset: str | None
    kind: str | None  # caption kind the file implies, None for mixed files


def _split_of(stem: str, rel: str) -> str:
    low = stem.lower()
    tokens = set(re.split(r"[^a-z0-9]+", low))
    train = "train" in low or "trn" in tokens
    test = "test" in low or bool(tokens & {"val", "valid", "validation", "eval"})
    if train == test:
        raise ReleaseError(
            f"text file {rel!r}: cannot tell its split from the name (expected 'train', "
            "'training', 'test' or 'test1' in it); rename the file, e.g. SARVQA2_train.csv"
        )
    return "train" if train else "test"


def _file_kind(stem: str, split: str) -> str | None:
    low = stem.lower()
    if re.search(r"concise|short|brief", low):
        return "concise"
    if re.search(r"detail|complex|long", low):
        return "detailed"
    if split == "test":
        m = re.search(r"test(\d*)", low)
        if m and m.group(1) == "1":
            return "concise"
        if m and m.group(1) == "":
            return "detailed"
    return None


def _find_text_files(release: Path) -> tuple[list[_TextFile], list[str]]:
    """List the text files to read (CSV preferred over a JSON that says the same thing)."""
    text_dir = release / "Text"
    groups: dict[tuple, list[_TextFile]] = defaultdict(list)
    notes: list[str] = []
    ignored: list[str] = []
    for e in _walk(text_dir):
        p = Path(e.path)
        rel = p.relative_to(release).as_posix()
        low = e.name.lower()
        ext = next((x for x in _TEXT_EXTS if low.endswith(x)), None)
        if ext is None or e.name.startswith("."):
            ignored.append(rel)
            continue
        stem = e.name[: -len(ext)]
        where = rel.lower()
        name_low = stem.lower()
        if "vqa" in name_low:
            category = "vqa"
        elif "caption" in name_low or "cap" in re.split(r"[^a-z]+", name_low):
            category = "caption"
        elif "/vqa/" in where:
            category = "vqa"
        elif "/caption" in where:
            category = "caption"
        else:
            raise ReleaseError(
                f"text file {rel!r}: neither its name nor its folder says whether it holds "
                "captions or VQA; move it to Text/caption/ or Text/VQA/ (or out of Text/)"
            )
        split = _split_of(stem, rel)
        m = re.search(r"sar\s*[-_]?\s*vqa\s*[-_]?\s*([12])", name_low)
        subset = f"SARVQA{m.group(1)}" if (m and category == "vqa") else None
        kind = _file_kind(stem, split) if category == "caption" else None
        tf = _TextFile(p, rel, category, split, subset, kind)
        groups[(category, split, subset, kind)].append(tf)
    chosen: list[_TextFile] = []
    for files in groups.values():
        csvs = [f for f in files if f.rel.lower().endswith(".csv")]
        if csvs:
            skipped = [f.rel for f in files if f not in csvs]
            if skipped:
                notes.append(
                    f"read {', '.join(f.rel for f in csvs)}; skipped its JSON twin(s) "
                    f"{', '.join(skipped)} (same subset, split and kind)"
                )
            chosen += csvs
        else:
            chosen += files
    if ignored:
        notes.append(f"ignored {len(ignored)} non-text file(s) under Text/: "
                     f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
    chosen.sort(key=lambda f: f.rel)
    return chosen, notes


# A row as read: (line, values, problem). ``problem`` is a detail string when the record
# cannot be parsed (its values are then meaningless).
_Row = tuple[int, list[str], str | None]


def _check_last_record(text: str, start: int, rel: str) -> None:
    """Raise when the file ends inside a quoted field (the csv module takes that silently).

    A quote that is never closed swallows every following line into one field, and the csv
    module returns that field at the end of the file without a word. The last record (from
    line ``start``) then spans several lines with an odd number of quotes (quoting, and doubled
    quotes inside quoted fields, always come in pairs).
    """
    if start < 1 or '"' not in text:
        return
    tail = "".join(text.splitlines(keepends=True)[start - 1:])
    if tail.rstrip("\r\n").count("\n") and tail.count('"') % 2:
        raise ReleaseError(
            f"text file {rel!r}: line {start}: the file ends inside a quoted field: a quote "
            f"opened on line {start} is never closed, so every following line reads as one "
            f"field; fix or remove the stray '\"' on line {start} (fields holding quotes must "
            "be quoted, with inner quotes doubled)"
        )


def _read_csv(text: str, rel: str) -> tuple[list[str], Iterator[_Row]]:
    """Return the header and an iterator over the data records of a CSV text."""
    reader = csv.reader(io.StringIO(text, newline=""))
    state = {"prev": 0}

    # the csv module refuses fields over 128 KiB by default, and a validly quoted 1 MB caption
    # is no error: no field can be longer than the file; the limit is the module's global, so it
    # is raised for each record read and given back at once
    limit = max(len(text) + 1, csv.field_size_limit())

    def records() -> Iterator[tuple[int, int, list[str]]]:
        try:
            while True:
                old = csv.field_size_limit(limit)
                try:
                    row = next(reader)
                except StopIteration:
                    _check_last_record(text, state.get("last", 0), rel)
                    return
                finally:
                    csv.field_size_limit(old)
                start = state["prev"] + 1
                end = reader.line_num
                state["prev"] = end
                state["last"] = start
                yield start, end, row
        except csv.Error as e:
            start = state["prev"] + 1
            raise ReleaseError(
                f"text file {rel!r}: line {start}: the CSV cannot be read past this record "
                f"({e}); most likely a quote opened on line {start} is never closed, so the "
                f"rest of the file reads as one field; fix or remove the stray '\"' on line "
                f"{start} (fields holding quotes must be quoted, with inner quotes doubled)"
            ) from None

    it = records()
    header: list[str] | None = None
    for _start, _end, row in it:
        if row and any(c.strip() for c in row):
            header = row
            break
    if header is None:
        return [], iter(())
    n = len(header)

    def rows() -> Iterator[_Row]:
        for start, end, row in it:
            if not row:
                continue
            if end - start >= _MAX_RECORD_LINES:
                raise ReleaseError(
                    f"text file {rel!r}: line {start}: one record runs over lines {start}-{end}; "
                    f"a quote opened on line {start} is never closed where it should be, which "
                    f"swallows the following records; fix or remove the stray '\"' on line "
                    f"{start}"
                )
            if len(row) != n:
                if len(row) > n and not any(c.strip() for c in row[n:]):
                    row = row[:n]
                elif len(row) == 1 and not row[0].strip():
                    continue
                else:
                    span = f"lines {start}-{end}" if end > start else f"line {start}"
                    yield start, row, (
                        f"{len(row)} fields where the header has {n} ({span}; an unquoted comma "
                        "or an unbalanced quote?)"
                    )
                    continue
            yield start, row, None

    return header, rows()


def _scalar(value: object) -> tuple[str, str | None]:
    """Turn a JSON value into a cell: (text, problem)."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        if len(value) == 0:
            return "", None
        if len(value) == 1:
            return _scalar(value[0])
        return "", f"a list of {len(value)} values where one was expected"
    if isinstance(value, dict):
        return "", "an object where a text was expected"
    return str(value), None


_CHAT_KEYS = ("messages", "conversations")
_USER_ROLES = frozenset({"user", "human"})
_ASSISTANT_ROLES = frozenset({"assistant", "gpt", "bot", "model"})


def _json_items(text: str, rel: str, resolvable) -> list[tuple[int, dict]]:
    """Parse a JSON (or JSON Lines) text into (line, object) items.

    ``line`` is the 1-based item index (JSON Lines: the physical line). Items that are not
    objects come back as ``{"__bad__": value}`` so they can be rejected in place.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise ReleaseError(
                f"text file {rel!r}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg});"
                " fix the file there (or delete it and keep its CSV twin)"
            ) from None
        items = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    o = json.loads(line)
                except json.JSONDecodeError as e2:
                    raise ReleaseError(
                        f"text file {rel!r}: line {i}: not valid JSON Lines ({e2.msg}); fix "
                        "that line"
                    ) from None
                items.append((i, o if isinstance(o, dict) else {"__bad__": o}))
        return items
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if data and all(resolvable(k) for k in list(data)[:_SNIFF_ROWS]):
            # {image: [items]} or {image: item}: put the image into each item.
            flat = []
            for k, v in data.items():
                for o in v if isinstance(v, list) else [v]:
                    flat.append({"image": k, **o} if isinstance(o, dict) else {"__bad__": o})
            data = flat
        elif len(data) == 1 and lists:
            data = data[lists[0]]
        else:
            raise ReleaseError(
                f"text file {rel!r}: a JSON object with keys {list(data)[:8]}; expected a list "
                "of rows (objects), an object holding one such list, or an object keyed by "
                "image name; convert the file to one of those"
            )
    if not isinstance(data, list):
        raise ReleaseError(f"text file {rel!r}: JSON top level is {type(data).__name__}; "
                           "expected a list of rows")
    return [(i, o if isinstance(o, dict) else {"__bad__": o})
            for i, o in enumerate(data, start=1)]


def _text_of(value: object) -> tuple[str, str | None]:
    """Like :func:`_scalar`, with a fast path for the common plain string."""
    if type(value) is str:
        return value, None
    return _scalar(value)


def _chat_rows(obj: dict, category: str
               ) -> tuple[list[tuple[str, ...]], dict[str, str], str | None]:
    """Expand one LLaMA-Factory / ShareGPT item into rows (one per turn pair).

    Returns:
        The rows as (image, question, answer) or (image, caption) tuples, the item's other
        scalar fields (e.g. a ``type`` label), and a problem when the item is unusable.

    """
    turns = obj.get("messages")
    if turns is None:
        turns = obj.get("conversations")
    imgs = obj.get("images", obj.get("image", ""))
    if type(imgs) is list and len(imgs) == 1 and type(imgs[0]) is str:
        image = imgs[0]
    else:
        image, problem = _scalar(imgs)
        if problem:
            return [], {}, f"images: {problem}"
    extras: dict[str, str] = {}
    if len(obj) > 2:
        for k, v in obj.items():
            if k not in _CHAT_KEYS and k not in ("images", "image"):
                sv, p = _scalar(v)
                if p is None:
                    extras[k] = sv
    if type(turns) is not list:
        return [], {}, "messages is not a list"
    vqa = category == "vqa"
    rows: list[tuple[str, ...]] = []
    pending: str | None = None
    for t in turns:
        if type(t) is not dict:
            return [], {}, "a message that is not an object"
        role = t.get("role")
        if role is None:
            role = t.get("from", "")
        content = t.get("content")
        if content is None:
            content = t.get("value", "")
        content, p = _text_of(content)
        if p:
            return [], {}, f"message content: {p}"
        role = str(role).lower()
        if role in _USER_ROLES:
            if pending is not None and vqa:
                return [], {}, "two user turns in a row"
            pending = content
        elif role in _ASSISTANT_ROLES:
            if vqa:
                if pending is None:
                    return [], {}, "an assistant turn without a question before it"
                rows.append((image, pending, content))
            else:
                rows.append((image, content))
            pending = None
        # system and tool turns carry no data of ours
    if pending is not None and vqa:
        return [], {}, "a user turn without an answer"
    if not rows:
        return [], {}, "no user/assistant turns"
    return rows, extras, None


def _read_json(text: str, rel: str, category: str, resolvable
               ) -> tuple[list[str], Iterator[_Row], dict[str, int]]:
    """Return headers, rows and fixed roles (chat layout) of a JSON text file."""
    items = _json_items(text, rel, resolvable)
    del text
    chat = any(("messages" in o or "conversations" in o) for _, o in items[:_SNIFF_ROWS])
    out: list[_Row] = []
    index: dict[str, int] = {}
    fixed: dict[str, int] = {}
    if chat:
        roles = ("image", "question", "answer") if category == "vqa" else ("image", "caption")
        index = {r: i for i, r in enumerate(roles)}
        fixed = dict(index)
        width = len(roles)
    for line, obj in items:
        if "__bad__" in obj:
            out.append((line, [], "an item that is not an object"))
            continue
        if chat:
            if "messages" not in obj and "conversations" not in obj:
                out.append((line, [], "an item without messages in a chat-layout file"))
                continue
            rows, extras, problem = _chat_rows(obj, category)
            if problem:
                out.append((line, [], problem))
                continue
            for r in rows:
                vals = list(r)
                for k, v in extras.items():
                    i = index.setdefault(k, len(index))
                    if i >= len(vals):
                        vals.extend([""] * (i + 1 - len(vals)))
                    vals[i] = v
                out.append((line, vals, None))
        else:
            vals = []
            problem = None
            for k, v in obj.items():
                sv, p = _text_of(v)
                if p and problem is None:
                    problem = f"field {k!r}: {p}"
                i = index.setdefault(k, len(index))
                if i >= len(vals):
                    vals.extend([""] * (i + 1 - len(vals)))
                vals[i] = sv
            out.append((line, vals, problem))
    del items
    names = list(index)
    n = len(names)

    def rows_iter() -> Iterator[_Row]:
        for line, vals, problem in out:
            if problem is None and len(vals) < n:
                vals.extend([""] * (n - len(vals)))
            yield line, vals, problem

    if chat and n == width:
        return names, iter(out), fixed
    return names, rows_iter(), fixed


# --------------------------------------------------------------------------- columns

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "image": ("image", "img", "imagename", "imagepath", "filename", "file", "path", "images",
              "imageid", "imgid", "imgname", "imgpath", "imagefile", "imgfile", "imagefilename",
              "sarimage", "sarimagename", "picture", "pic"),
    "question": ("question", "q", "query", "prompt", "instruction", "ques", "questions",
                 "questiontext", "input"),
    "answer": ("answer", "a", "gt", "groundtruth", "label", "answers", "ans", "output",
               "response", "target", "reply", "gtanswer", "answertext"),
    "caption": ("caption", "text", "description", "sentence", "captions", "desc", "captiontext",
                "sentences", "output", "response", "target", "label"),
    "task": ("task", "type", "questiontype", "category", "application", "qtype", "tasktype",
             "tasklabel", "applicationtype", "subtype", "questioncategory", "tasks", "tasktag",
             "label", "othertype", "taskname", "app"),
    "kind": ("kind", "captiontype", "type", "style", "length", "captionkind", "captionstyle",
             "captionlength", "label", "category"),
}
_ROLES_FOR = {"vqa": ("image", "question", "answer", "task"), "caption": ("image", "caption",
                                                                         "kind")}
_REQUIRED_FOR = {"vqa": ("image", "question", "answer"), "caption": ("image", "caption")}
_NONE_VALUES = ("", "none", "-", "null")


def _columns_hint(category: str) -> str:
    if category == "vqa":
        return "--columns image=HEADER,question=HEADER,answer=HEADER (columns={...} in Python)"
    return "--columns image=HEADER,caption=HEADER (columns={...} in Python)"


def _detect_columns(
    headers: list[str],
    sample: list[list[str]],
    category: str,
    rel: str,
    mapping: Mapping[str, str],
    fixed: Mapping[str, int],
    resolvable,
    used_mapping: set[str],
) -> tuple[dict[str, int], list[int], list[str]]:
    """Decide which column plays which role.

    Returns:
        role -> column index, the extra task-label columns (used for others types), notes.

    """
    norms = [_norm(h) for h in headers]
    roles = _ROLES_FOR[category]
    chosen: dict[str, int] = dict(fixed)
    disabled: set[str] = set()
    notes: list[str] = []
    for role, header in mapping.items():
        if role not in roles:
            continue
        if _norm(header) in ("none", "null") or header.strip() in _NONE_VALUES:
            disabled.add(role)
            used_mapping.add(role)
            chosen.pop(role, None)
            continue
        idx = [i for i, h in enumerate(headers) if h == header]
        if not idx:
            idx = [i for i, n in enumerate(norms) if n == _norm(header)]
        if len(idx) == 1:
            chosen[role] = idx[0]
            used_mapping.add(role)
        elif len(idx) > 1:
            raise ColumnError(
                f"text file {rel!r}: columns={{{role!r}: {header!r}}} matches {len(idx)} headers "
                f"of {headers}; rename the duplicate headers"
            )
    taken = set(chosen.values())

    def column(i: int) -> list[str]:
        return [r[i] for r in sample if i < len(r) and r[i].strip()]

    def share(i: int, test) -> float:
        vals = column(i)
        return sum(1 for v in vals if test(v)) / len(vals) if vals else 0.0

    def candidates(role: str) -> list[int]:
        syn = _SYNONYMS[role]
        found = [i for i, n in enumerate(norms) if n in syn and i not in taken]
        return sorted(found, key=lambda i: syn.index(norms[i]))

    extra_task: list[int] = []
    # Label roles first: they are decided by content, and what they take is no answer/caption.
    if category == "vqa" and "task" not in chosen and "task" not in disabled:
        tl = [i for i in candidates("task") if share(i, lambda v: _task_label(v) is not None)
              >= 0.5]
        if tl:
            chosen["task"] = tl[0]
            extra_task = tl[1:]
            taken.update(tl)
        for i in candidates("task"):
            if norms[i] not in _SYNONYMS["answer"] and norms[i] not in _SYNONYMS["question"] \
                    and i not in tl and norms[i] not in _SYNONYMS["image"]:
                notes.append(f"{rel}: column {headers[i]!r} does not hold task names; tasks are "
                             "inferred from the questions")
    if category == "caption" and "kind" not in chosen and "kind" not in disabled:
        kl = [i for i in candidates("kind") if share(i, lambda v: _kind_label(v) is not None)
              >= 0.5]
        if kl:
            chosen["kind"] = kl[0]
            taken.add(kl[0])
    for role in ("image", "question", "answer", "caption"):
        if role not in roles or role in chosen or role in disabled:
            continue
        cands = candidates(role)
        if role == "caption" and not cands:
            cands = [i for i in candidates("answer")]
        if len(cands) > 1 and role == "image":
            scores = [share(i, resolvable) for i in cands]
            best = max(scores)
            if best > 0 and scores.count(best) == 1:
                cands = [cands[scores.index(best)]]
        if len(cands) == 1:
            chosen[role] = cands[0]
            taken.add(cands[0])
        elif len(cands) > 1:
            raise ColumnError(
                f"text file {rel!r}: cannot decide the {role} column: "
                f"{[headers[i] for i in cands]} all look like one; headers found: {headers}; "
                f"pass an explicit mapping, e.g. {_columns_hint(category)}"
            )
    missing = [r for r in _REQUIRED_FOR[category] if r not in chosen]
    if missing:
        first = sample[0] if sample else []
        looks_like_data = any(resolvable(h) for h in headers) or (
            headers and any(h.lower().endswith(_IMAGE_EXTS) for h in headers))
        extra = (" The first line looks like data, not a header: add a header line."
                 if looks_like_data else "")
        for r in missing:
            if r in mapping:
                extra += (f" The columns mapping {r}={mapping[r]!r} matches no header of this "
                          "file.")
        raise ColumnError(
            f"text file {rel!r}: cannot identify the {', '.join(missing)} column(s); headers "
            f"found: {headers}{'; first row: ' + str(first[:6]) if first else ''}.{extra} "
            f"Pass an explicit mapping, e.g. {_columns_hint(category)}"
        )
    return chosen, extra_task, notes
