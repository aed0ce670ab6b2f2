"""Report-generation metrics of the COCO caption toolkit: BLEU-1..4, CIDEr, ROUGE-L and METEOR.

EMIXER (section 4) and R2Gen score generated reports against the real reports of held-out images with the
``pycocoevalcap`` scorers after its PTB tokenizer (lower case, punctuation removed). This module calls exactly
those scorers, so the numbers are comparable with published tables:

* PTB tokenization and METEOR run Java (the Stanford CoreNLP and METEOR 1.5 jars shipped in ``pycocoevalcap``).
  Without Java the texts go through :func:`simple_tokenize` instead, and METEOR is left out of the result with a
  logged warning: a missing metric is visible, a silent zero is not.
* METEOR loads a 60 MB paraphrase table when its Java process starts (seconds), so one scorer process is kept
  per Python process and shared by every call.

Inputs are ``{id: report}`` mappings (a value may also be a list of reference reports) or plain lists, whose
ids are their positions. References and hypotheses must hold the same ids.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any, Union

from bundle.data.errors import DataError
from bundle.data.reports import iter_jsonl_reports

__all__ = [
    "METRIC_KEYS",
    "java_available",
    "match_ids",
    "meteor_scorer",
    "ptb_tokenize",
    "read_reports_jsonl",
    "report_metrics",
    "simple_tokenize",
]

logger = logging.getLogger(__name__)

#: The keys of :func:`report_metrics`, in table order.
METRIC_KEYS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "ROUGE-L", "METEOR")

#: Reports keyed by id (one text, or several reference texts), or a list whose ids are the positions.
Reports = Union[Mapping[Any, Union[str, Sequence[str]]], Sequence[str]]

# Words of the fallback tokenizer (punctuation between words is dropped, as the PTB path drops it).
_WORD = re.compile(r"[a-z0-9]+(?:[-./'][a-z0-9]+)*")
_MAX_SHOWN = 5


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH (PTB tokenizer and METEOR need it)."""
    return shutil.which("java") is not None


def read_reports_jsonl(path: str | PathLike) -> dict[str, str]:
    """``{id: report}`` from a JSONL file of ``{"id": ..., "report": ...}`` lines (blank lines are skipped).

    Raises :class:`DataError` naming the file and line for unreadable JSON, a missing key, a report that is
    not text, a duplicate id, and for a file without reports.
    """
    out: dict[str, str] = {}
    first_where: dict[str, str] = {}
    for key, report, where in iter_jsonl_reports(path):
        if key in out:
            raise DataError(where, f"duplicate id {key!r} (first on line {first_where[key].rsplit(':', 1)[1]})")
        out[key] = report
        first_where[key] = where
    if not out:
        raise DataError(path, "no reports in file")
    return out


def _as_dict(reports: Reports, what: str) -> dict[str, list[str]]:
    """``{id: [text, ...]}`` with string ids; lists get their positions as ids."""
    items = reports.items() if isinstance(reports, Mapping) else enumerate(reports)
    out: dict[str, list[str]] = {}
    for key, value in items:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise DataError(None, f"{what} {key!r}: expected report text (or a non-empty list of texts), got {value!r}")
        if str(key) in out:
            raise DataError(None, f"{what}: duplicate id {str(key)!r}")
        out[str(key)] = texts
    if not out:
        raise DataError(None, f"no {what}")
    return out


def _few(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in sorted(ids)[:_MAX_SHOWN])
    return f"{shown}, ..." if len(ids) > _MAX_SHOWN else shown


def match_ids(references: Reports, hypotheses: Reports) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """References and hypotheses as ``{id: [text, ...]}`` over the same ids (in the references' order).

    Each hypothesis must be one text. Raises :class:`DataError` listing a few ids that one side lacks.
    """
    refs = _as_dict(references, "references")
    hyps = _as_dict(hypotheses, "hypotheses")
    missing_hyp = [i for i in refs if i not in hyps]
    missing_ref = [i for i in hyps if i not in refs]
    if missing_hyp or missing_ref:
        problems = []
        if missing_hyp:
            problems.append(f"{len(missing_hyp)} reference id(s) have no hypothesis ({_few(missing_hyp)})")
        if missing_ref:
            problems.append(f"{len(missing_ref)} hypothesis id(s) have no reference ({_few(missing_ref)})")
        raise DataError(None, "references and hypotheses differ in ids: " + "; ".join(problems))
    several = [i for i, texts in hyps.items() if len(texts) != 1]
    if several:
        raise DataError(None, f"hypotheses must be one text per id; several for {_few(several)}")
    return refs, {i: hyps[i] for i in refs}


def ptb_tokenize(texts: Mapping[Any, Sequence[str]]) -> dict[Any, list[str]]:
    """pycocoevalcap's PTB tokenization (Java) of ``{key: [text, ...]}``, in one Java call."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": t} for t in v] for k, v in texts.items()})


def simple_tokenize(text: str) -> str:
    """Fallback tokenizer when Java is absent: lower case, words and numbers only, punctuation dropped.

    Words keep inner hyphens, dots, slashes and apostrophes ("x-ray", "2.5", "a/p"), as the PTB tokenizer
    keeps them. It differs from PTB on contractions ("isn't" stays one token) and brackets (pycocoevalcap keeps
    PTB's lower-cased "-lrb-" / "-rrb-" tokens, which its punctuation filter misses), so scores may differ slightly.
    """
    return " ".join(_WORD.findall(text.lower()))


def _tokenize(
    refs: dict[str, list[str]], hyps: dict[str, list[str]], use_java: bool
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Tokenized references and hypotheses: PTB (Java) when ``use_java``, else :func:`simple_tokenize`."""
    if not use_java:
        return (
            {i: [simple_tokenize(t) for t in texts] for i, texts in refs.items()},
            {i: [simple_tokenize(t) for t in texts] for i, texts in hyps.items()},
        )
    joined = {("r", i): texts for i, texts in refs.items()}
    joined.update({("h", i): texts for i, texts in hyps.items()})
    tokens = ptb_tokenize(joined)  # one Java start for both sides; tokenization is per text, so results match
    return {i: tokens[("r", i)] for i in refs}, {i: tokens[("h", i)] for i in hyps}


_METEOR_LOCK = threading.Lock()
_METEOR: list[Any] = []


def meteor_scorer() -> Any:
    """The shared pycocoevalcap ``Meteor`` scorer (its Java process starts on the first call)."""
    with _METEOR_LOCK:
        if not _METEOR:
            from pycocoevalcap.meteor.meteor import Meteor

            _METEOR.append(Meteor())
        return _METEOR[0]


def _meteor_score(refs: dict[str, list[str]], hyps: dict[str, list[str]]) -> float:
    scorer = meteor_scorer()
    try:
        score, _ = scorer.compute_score(refs, hyps)
    except (ValueError, OSError) as err:  # the Java process died: start a fresh one next time
        if scorer.lock.locked():  # pycocoevalcap keeps its lock on error, and its __del__ would wait on it
            scorer.lock.release()
        with _METEOR_LOCK:
            _METEOR.clear()
        raise RuntimeError(f"METEOR's Java process failed ({err}); rerun with meteor=False to skip METEOR") from err
    return float(score)


def report_metrics(references: Reports, hypotheses: Reports, meteor: bool | str = "auto") -> dict[str, float]:
    """BLEU-1..4, CIDEr, ROUGE-L and METEOR of ``hypotheses`` against ``references`` (corpus level).

    Args:
        references: ``{id: report}`` (or ``{id: [report, ...]}`` for several references), or a list.
        hypotheses: ``{id: report}`` or a list, over the same ids as ``references``.
        meteor: ``"auto"`` computes METEOR when Java is available and otherwise leaves it out with a warning;
            ``True`` requires it (RuntimeError without Java); ``False`` skips it.

    Returns:
        ``{"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "ROUGE-L"[, "METEOR"]}`` as floats, from
        pycocoevalcap's ``Bleu(4)`` (``closest`` reference length), ``Cider()``, ``Rouge()`` and ``Meteor()``.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if meteor not in ("auto", True, False):
        raise ValueError(f"meteor must be 'auto', True or False, got {meteor!r}")
    refs, hyps = match_ids(references, hypotheses)
    java = java_available()
    if meteor is True and not java:
        raise RuntimeError("METEOR needs Java, and no `java` is on the PATH (install a JRE or pass meteor=False)")
    if not java:
        logger.warning(
            "Java not found: reports are tokenized with simple_tokenize instead of the PTB tokenizer%s",
            "" if meteor is False else ", and METEOR is left out",
        )
    refs_tok, hyps_tok = _tokenize(refs, hyps, use_java=java)

    bleu, _ = Bleu(4).compute_score(refs_tok, hyps_tok, verbose=0)
    out = {f"BLEU-{n}": float(b) for n, b in enumerate(bleu, start=1)}
    out["CIDEr"] = float(Cider().compute_score(refs_tok, hyps_tok)[0])
    out["ROUGE-L"] = float(Rouge().compute_score(refs_tok, hyps_tok)[0])
    if java and meteor is not False:
        out["METEOR"] = _meteor_score(refs_tok, hyps_tok)
    return out
