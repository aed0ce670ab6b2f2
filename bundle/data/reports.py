"""Radiology report text: sections of MIMIC-CXR free text and IU X-ray XML, cleaning and sentence splitting.

EMIXER trains on the FINDINGS and IMPRESSION sections of each report. MIMIC-CXR stores a report as free
text with upper-case headers ("FINAL REPORT", "INDICATION:", "FINDINGS:", ...) and "___" where words were
de-identified; the IU X-ray / Open-i collection stores XML with one ``AbstractText`` per section and "XXXX"
for de-identified words. This module turns both into clean section text; the report labeler and the
tokenizer read sentences from :func:`split_sentences`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path

from .errors import DataError

__all__ = [
    "DEFAULT_SECTIONS",
    "extract_sections",
    "clean_report",
    "normalise_report_text",
    "split_sentences",
    "select_sections",
    "read_report_file",
    "parse_iu_xml",
    "iter_iu_reports_from_xrv",
    "xrv_iu_reports_path",
]

#: The sections EMIXER learns from (paper section 4: findings and impression).
DEFAULT_SECTIONS: tuple[str, ...] = ("findings", "impression")

#: Section names that are not report body: text before the first header, and the MIMIC "FINAL REPORT" banner.
_BANNER_SECTIONS = ("preamble", "final report")

# Header spellings recognised in any case at the start of a line (and in upper case after a sentence end).
# fmt: off
_KNOWN_HEADERS = (
    "findings and impression", "impression and findings", "findings/impression", "impression/findings",
    "findings", "finding", "impressions", "impression", "conclusions", "conclusion",
    "indications", "indication", "reason for examination", "reason for exam", "clinical information",
    "clinical history", "history", "comparisons", "comparison", "technique", "examination", "exam",
    "recommendations", "recommendation(s)", "recommendation", "notification", "wet read", "procedure",
)
# fmt: on
_ALIASES = {
    "finding": "findings",
    "findings and impression": "findings",
    "impression and findings": "findings",
    "findings/impression": "findings",
    "impression/findings": "findings",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "indications": "indication",
    "comparisons": "comparison",
    "clinical history": "history",
    "exam": "examination",
    "recommendations": "recommendation",
    "recommendation(s)": "recommendation",
}
_KNOWN_ALT = "|".join(re.escape(h) for h in sorted(_KNOWN_HEADERS, key=len, reverse=True))
_HEADER = re.compile(
    r"^[ \t]*(?P<final>(?i:final[ \t]+report))[ \t]*:?[ \t]*$"  # MIMIC banner, alone on its line
    rf"|^[ \t]*(?P<known>(?i:{_KNOWN_ALT}))[ \t]*:"  # known header, any case, at a line start
    r"|^[ \t]*(?P<generic>[A-Z][A-Z /&(),'-]{1,60}?)[ \t]*:"  # any upper-case header at a line start
    rf"|(?<=[.!?])[ \t]+(?P<inline>{_KNOWN_ALT.upper()})[ \t]*:",  # "... normal. IMPRESSION: ..." on one line
    re.MULTILINE,
)

_XRAY = re.compile(r"\b([xX])-XXXX\b")  # IU's "x-XXXX" is always "x-ray"
_PLACEHOLDER = re.compile(r"_{2,}|[-/]?(?<![A-Za-z])X{2,}(?![a-z])[-/]?")
_LIST_NUMBER_LINE = re.compile(r"^[ \t]*\(?\d{1,2}[.)][ \t]+")
_LIST_NUMBER_INLINE = re.compile(r"(?<=[.!?:;])(\s+)\(?\d{1,2}[.)]\s+(?=[A-Za-z])")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!])")  # not "?": "? pneumonia" asks about the next word
_EMPTY_BRACKETS = re.compile(r"\(\s*[,;]?\s*\)|\[\s*\]")
_REPEATED_PUNCT = re.compile(r"([,;:])(?:\s*[,;:])+")
_PUNCT_BEFORE_STOP = re.compile(r"\s*[,;:]\s*(?=\.)|(?<=\.)(?:\s*\.)+")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_LIST_NUMBER_ONLY = re.compile(r"^\(?\d{1,2}[.)]?$")
_LEADING_LIST_NUMBER = re.compile(r"^\(?\d{1,2}[.)]\s+")
_ABBREVIATIONS = frozenset(
    {"approx", "dr", "mr", "mrs", "ms", "vs", "e.g", "i.e", "eg", "ie", "cf", "fig", "st", "a.m", "p.m", "prof"}
)


def _section_name(raw: str) -> str:
    name = re.sub(r"\s+", " ", raw.strip().lower())
    return _ALIASES.get(name, name)


def extract_sections(text: str) -> dict[str, str]:
    """Split a free-text report at its headers into ``{lower-case section name: text}``, in report order.

    Headers are matched alone on their line or followed by text on the same line. Text before the first
    header is kept under ``"preamble"``; the MIMIC banner "FINAL REPORT" becomes section ``"final report"``.
    Repeated headers are concatenated. Plural/alias spellings are merged ("IMPRESSIONS" -> "impression",
    "CONCLUSION" -> "impression", "FINDINGS AND IMPRESSION" -> "findings"). A report without any header
    returns ``{"preamble": text}``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    head = text[: matches[0].start()] if matches else text
    if head.strip():
        sections["preamble"] = head.strip()
    for i, match in enumerate(matches):
        name = _section_name(next(g for g in match.group("final", "known", "generic", "inline") if g))
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        sections[name] = f"{sections[name]}\n{body}".strip() if name in sections else body
    return sections


def _strip_line_numbering(text: str) -> str:
    """Remove list numbers at line starts, closing the previous item with a full stop when it has none."""
    out: list[str] = []
    for line in text.split("\n"):
        numbered = _LIST_NUMBER_LINE.match(line)
        if numbered or not line.strip():
            # a list item or a blank line (paragraph break) starts a new sentence
            for j in range(len(out) - 1, -1, -1):
                if out[j].strip():
                    if out[j].rstrip()[-1] not in ".!?:;":
                        out[j] = out[j].rstrip() + "."
                    break
        out.append(line[numbered.end() :] if numbered else line)
    return "\n".join(out)


def clean_report(text: str) -> str:
    """Normalise report text: drop de-identification placeholders and list numbers, collapse whitespace.

    "___" (MIMIC) and "XXXX" (IU) are removed ("x-XXXX" becomes "x-ray"); "1." / "2)" at line or sentence
    starts are removed; case is kept, spaces before punctuation and punctuation left dangling by removals
    are tidied.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _XRAY.sub(r"\1-ray", text)
    text = _PLACEHOLDER.sub(" ", text)
    text = _strip_line_numbering(text)
    text = re.sub(r"\s+", " ", text)
    text = _LIST_NUMBER_INLINE.sub(r"\1", text)
    text = _EMPTY_BRACKETS.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_PUNCT.sub(r"\1", text)
    text = _PUNCT_BEFORE_STOP.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text.lstrip(".,;:!? ").strip()


_NON_WORD = re.compile(r"[\W_]+")


def normalise_report_text(text: str) -> str:
    """The form in which two reports count as the same text: lower case, punctuation out, whitespace collapsed.

    Every run of characters that are neither letters nor digits (punctuation, "___" placeholders, line breaks)
    becomes one space, so "No effusion." and "no  effusion" are the same text. The data layer uses it to keep
    held-out report text out of training and the evaluation to count verbatim copies.
    """
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def split_sentences(text: str) -> list[str]:
    """Split text into stripped, non-empty sentences.

    A sentence ends at ".", "!" or "?" followed by whitespace or the end of the text, except after a common
    abbreviation ("approx.", "Dr.", "e.g.") or a bare list number ("1."), or a "?" standing before a word
    ("? pneumonia"); decimals ("1.5 cm") never split.
    Leading list numbers are removed from each sentence.
    """
    sentences: list[str] = []
    start = 0
    text = text.strip()
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.end()].strip()
        if _LIST_NUMBER_ONLY.match(candidate):
            start = match.end()
            continue
        if match.group(0) == "?" and (match.start() == 0 or text[match.start() - 1].isspace()):
            continue  # "? pneumonia": a question mark in front of a word asks about it, it ends nothing
        if match.group(0) == ".":
            words = text[start : match.start()].split()
            if words and words[-1].lower().lstrip("(") in _ABBREVIATIONS:
                continue
        sentences.append(candidate)
        start = match.end()
    sentences.append(text[start:].strip())
    out = [_LEADING_LIST_NUMBER.sub("", s).strip() for s in sentences]
    return [s for s in out if any(c.isalnum() for c in s)]


def _as_sentence(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def select_sections(
    sections: Mapping[str, object],
    wanted: Sequence[str] | str | None = DEFAULT_SECTIONS,
    source: str | PathLike | None = None,
) -> str:
    """Join the ``wanted`` sections that exist into one cleaned text (each section ends as a sentence).

    ``wanted`` is a sequence of section names, a comma-separated string, or ``None`` / ``"all"`` for every
    section in report order. A report without any section header counts as FINDINGS. Raises
    :class:`DataError` naming ``source`` for an empty report or when none of the wanted sections has text.
    """
    texts = {name: clean_report(value) for name, value in sections.items() if isinstance(value, str)}
    if not any(texts.values()):
        raise DataError(source, "empty report")
    if isinstance(wanted, str):
        names = [w.strip().lower() for w in wanted.split(",") if w.strip()]
        wanted = None if names == ["all"] else names
    if wanted is None:
        return " ".join(_as_sentence(t) for t in texts.values() if t)
    wanted = [_section_name(w) for w in wanted]
    if set(texts) <= set(_BANNER_SECTIONS) and "findings" in wanted:
        texts = {"findings": " ".join(_as_sentence(t) for t in texts.values() if t)}
    parts = [_as_sentence(texts[name]) for name in wanted if texts.get(name)]
    if not parts:
        found = [name for name, t in texts.items() if t and name not in _BANNER_SECTIONS]
        names = "/".join(name.upper() for name in wanted)
        found_text = f"sections found: {', '.join(found)}" if found else "the report has no section headers"
        raise DataError(source, f"missing report section: {names} ({found_text})")
    return " ".join(parts)


def read_report_file(path: str | PathLike, wanted: Sequence[str] | str | None = DEFAULT_SECTIONS) -> str:
    """Read a MIMIC-CXR style ``.txt`` report and return its ``wanted`` sections, cleaned (see select_sections)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing report file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(path, f"undecodable report file (not UTF-8 text): {err.reason} at byte {err.start}") from err
    if not text.strip():
        raise DataError(path, "empty report")
    return select_sections(extract_sections(text), wanted, source=path)


def _element_text(element: ET.Element | None) -> str:
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip() if element is not None else ""


def parse_iu_xml(path_or_bytes: str | PathLike | bytes, source: str | PathLike | None = None) -> dict:
    """Parse one IU X-ray / Open-i report XML (``ecgen-radiology/N.xml``).

    Returns ``{"id", "findings", "impression", "indication", "comparison", "mesh", "images"}``: section
    texts with whitespace collapsed but placeholders kept (clean them with :func:`select_sections`), the
    major MeSH terms (e.g. ``"Cardiomegaly/mild"``, ``"normal"``) and the parentImage ids of its images.
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        source = source if source is not None else path_or_bytes
        if not Path(path_or_bytes).is_file():
            raise DataError(source, "missing report file")
        data = Path(path_or_bytes).read_bytes()
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise DataError(source, f"malformed XML: {err}") from err
    if root.tag != "eCitation":
        raise DataError(source, f"not an IU X-ray report: root element <{root.tag}>, expected <eCitation>")
    uid = root.find("uId")
    report_id = uid.get("id") if uid is not None else None
    if not report_id:
        iu_id = root.find("IUXRId")
        if iu_id is None or not iu_id.get("id"):
            raise DataError(source, "IU X-ray report without <uId id=...> or <IUXRId id=...>")
        report_id = f"CXR{iu_id.get('id')}"
    out: dict = {"id": report_id, "findings": "", "impression": "", "indication": "", "comparison": ""}
    for abstract in root.iter("AbstractText"):
        label = (abstract.get("Label") or "").strip().lower()
        if label in out and label != "id":
            out[label] = _element_text(abstract)
    out["mesh"] = [_element_text(m) for m in root.findall("MeSH/major") if _element_text(m)]
    out["images"] = [img.get("id") for img in root.iter("parentImage") if img.get("id")]
    return out


def xrv_iu_reports_path() -> Path | None:
    """Path of torchxrayvision's bundled ``NLMCXR_reports.tgz`` (IU X-ray reports), or None if not installed."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "data" / "NLMCXR_reports.tgz"
    return path if path.is_file() else None


def _member_order(name: str) -> tuple[int, str]:
    stem = Path(name).stem
    return (int(stem), name) if stem.isdigit() else (1 << 30, name)


def iter_iu_reports_from_xrv() -> Iterator[dict]:
    """Yield :func:`parse_iu_xml` dicts for the IU X-ray reports shipped with torchxrayvision, in id order.

    Read from the installed archive at run time, without extracting it (the reports are CC BY-NC-ND 4.0 and
    must not be copied into the repository).
    """
    path = xrv_iu_reports_path()
    if path is None:
        raise DataError(
            "torchxrayvision/data/NLMCXR_reports.tgz", "IU X-ray reports not found: install torchxrayvision"
        )
    with tarfile.open(path, "r:gz") as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and m.name.endswith(".xml")),
            key=lambda m: _member_order(m.name),
        )
        for member in members:
            handle = archive.extractfile(member)
            if handle is not None:
                yield parse_iu_xml(handle.read(), source=f"{path}:{member.name}")


def iter_jsonl_reports(path: str | PathLike) -> Iterator[tuple[str, str, str]]:
    """``(id, report text, "file:line")`` for every non-blank line of a JSONL file of ``{"id", "report"}`` objects.

    Raises :class:`DataError` naming the file (and line) for an unreadable file, bad JSON, a line that is not an
    object, a missing key, or a report that is not text.
    """
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise DataError(path, f"cannot read reports file: {err.strerror or err}") from err
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(where, f"bad JSONL line: {err.msg} (column {err.colno})") from err
            if not isinstance(item, dict):
                got = line.strip()[:40]
                raise DataError(where, f'bad JSONL line: expected an object with "id" and "report", got {got!r}')
            for key in ("id", "report"):
                if key not in item:
                    raise DataError(where, f"missing \"{key}\" key (keys: {', '.join(item) or 'none'})")
            if not isinstance(item["report"], str):
                raise DataError(where, f"\"report\" is {type(item['report']).__name__}, expected text")
            yield str(item["id"]), item["report"], where
