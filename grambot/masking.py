"""The one masker: secret values never leave the engine in text.

`MASK` is the only place grambot hides secrets. It learns every secret value the engine reads
(an instance's own through `api.secrets`, shared ones through `api.vault`, the runtime's own
reads, the candidates of a live check) and `MASK.apply(text)` replaces them in whatever text is
about to leave: log lines (grambot.app.logs), failure messages and tracebacks (grambot.core),
health reports, status.json, the bot's log, `grambot run-plugin`'s log and `error:` line.
A value is masked in every form text shows it:

* whole: as it is; as repr()/ascii() and JSON quote it (escaped quotes, backslashes and
  non-ASCII letters); URL-encoded (`quote`/`quote_plus`, with either case of hex digits); and
  each of those escaped once more (a JSON log line quoting a repr, say);
* cut: a text that was cut inside a secret shows a piece of it, e.g. pydantic's
  `input_value='sk-ant-api03-abcdefghijk...uvwxyz0123456789'` or `message[:200]`. A piece of 8
  or more characters of any form of a secret that begins or ends at the edge of a cut (the
  start or end of the text or of a line, a quote, or an ellipsis: `...`, `…`) is masked too.

Values shorter than MIN_SECRET_LENGTH are never masked (they would hide ordinary words). Values
are kept for the life of the process: a secret that changed is still masked in its old form.
Masking is additive, so one process-wide masker is right even with several engines in it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, quote_plus

__all__ = ["FRAGMENT", "MASK", "MASKED", "MIN_SECRET_LENGTH", "Masker", "secret_forms"]


class SecretsStore(Protocol):
    """What the masker reads of a secrets store (grambot.secrets.store implements it)."""

    def keys(self, instance_id: str) -> Iterable[str]: ...
    def get(self, instance_id: str, key: str) -> str | None: ...


MASKED = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
FRAGMENT = 8  # a piece of a secret this long, left at the edge of a cut, is masked too
# where a cut may be: an ellipsis, a line end, a quote (the repr or JSON of a cut string)
_CUT_MARKERS = re.compile("\\.\\.\\.|\u2026|[\n\"']")
_HEX = re.compile(r"%[0-9A-F]{2}")


def _inner(quoted: str) -> str:
    return quoted[1:-1]


_ESCAPES: tuple[Callable[[str], str], ...] = (
    lambda v: _inner(repr(v)),
    lambda v: _inner(ascii(v)),
    lambda v: _inner(json.dumps(v)),
    lambda v: _inner(json.dumps(v, ensure_ascii=False)),
    lambda v: quote(v, safe=""),
    lambda v: quote(v, safe="/"),
    lambda v: quote_plus(v, safe=""),
    lambda v: quote_plus(v, safe="/"),
)


def secret_forms(value: str) -> frozenset[str]:
    """Every whole form of `value` the masker hides: as it is, escaped once, escaped twice,
    and URL-encoded with lower-case hex digits."""
    once = {value, *(escape(value) for escape in _ESCAPES)}
    twice = {escape(form) for form in once for escape in _ESCAPES}
    forms = once | twice
    forms |= {_HEX.sub(lambda m: m.group(0).lower(), form) for form in forms}
    return frozenset(forms)


@dataclass(frozen=True)
class _Index:
    """What `apply` needs, built once per set of values (immutable: shared across threads)."""

    forms: tuple[str, ...]  # longest first, so a secret containing another is masked whole
    grams: dict[str, tuple[tuple[str, int], ...]]  # 8-character piece -> (form, offset)


def _index(values: frozenset[str]) -> _Index:
    forms = sorted({f for v in values for f in secret_forms(v)}, key=len, reverse=True)
    grams: dict[str, list[tuple[str, int]]] = {}
    for form in forms:
        for offset in range(len(form) - FRAGMENT + 1):
            grams.setdefault(form[offset : offset + FRAGMENT], []).append((form, offset))
    return _Index(tuple(forms), {gram: tuple(where) for gram, where in grams.items()})


class Masker:
    """Secret values, and `apply(text)` that hides them. Thread-safe; `add` is cheap (the
    index is rebuilt lazily, by the next `apply`), so learning a thousand values costs one
    rebuild."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._index: _Index | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        """Mask these values from now on (None, non-strings and too short values ignored)."""
        fresh = {
            v
            for v in values
            if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH and v not in self._values
        }
        if fresh:
            with self._lock:
                self._values = self._values | fresh
                self._index = None

    def learn_instance(self, store: SecretsStore, instance_id: str) -> None:
        """Learn every secret of `instance_id` in `store` (an unreadable store is skipped: it
        must not hide the error being masked)."""
        try:
            self.add(store.get(instance_id, key) for key in store.keys(instance_id))
        except Exception:
            return

    def redact_instance(self, store: SecretsStore, instance_id: str, text: str) -> str:
        """`text` masked, the secrets of `instance_id` included even if it never read them."""
        self.learn_instance(store, instance_id)
        return self.apply(text)

    def clear(self) -> None:
        with self._lock:
            self._values = frozenset()
            self._index = None

    def __len__(self) -> int:
        return len(self._values)

    def apply(self, text: str) -> str:
        """`text` with every known secret, in every form, and every piece of one left at the
        edge of a cut, replaced by `***`."""
        if not self._values or not text:
            return text
        index = self._index
        if index is None:
            with self._lock:
                index = self._index
                if index is None:
                    index = self._index = _index(self._values)
        for form in index.forms:
            if form in text:
                text = text.replace(form, MASKED)
        if index.grams and len(text) >= FRAGMENT:
            text = _mask_cut_pieces(text, index.grams)
        return text


def _mask_cut_pieces(text: str, grams: dict[str, tuple[tuple[str, int], ...]]) -> str:
    """Mask pieces (FRAGMENT+ characters) of secret forms that begin or end at a cut."""
    starts = [0]  # where a piece may begin
    ends = [len(text)]  # where a piece may end
    for marker in _CUT_MARKERS.finditer(text):
        ends.append(marker.start())
        starts.append(marker.end())
    spans: list[tuple[int, int]] = []
    for start in starts:
        where = grams.get(text[start : start + FRAGMENT])
        if where:
            length = max(_common_prefix(text, start, form, offset) for form, offset in where)
            spans.append((start, start + length))
    for end in ends:
        where = grams.get(text[end - FRAGMENT : end]) if end >= FRAGMENT else None
        if where:
            length = max(
                _common_suffix(text, end, form, offset + FRAGMENT) for form, offset in where
            )
            spans.append((end - length, end))
    if not spans:
        return text
    spans.sort()
    merged: list[list[int]] = []
    for begin, finish in spans:
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finish)
        else:
            merged.append([begin, finish])
    for begin, finish in reversed(merged):
        text = text[:begin] + MASKED + text[finish:]
    return text


def _common_prefix(text: str, start: int, form: str, offset: int) -> int:
    """How many characters of `text` from `start` match `form` from `offset`."""
    n = 0
    limit = min(len(text) - start, len(form) - offset)
    while n < limit and text[start + n] == form[offset + n]:
        n += 1
    return n


def _common_suffix(text: str, end: int, form: str, form_end: int) -> int:
    """How many characters of `text` before `end` match `form` before `form_end`."""
    n = 0
    limit = min(end, form_end)
    while n < limit and text[end - 1 - n] == form[form_end - 1 - n]:
        n += 1
    return n


MASK = Masker()
