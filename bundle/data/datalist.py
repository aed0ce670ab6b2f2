"""Records -> the MONAI datalist the bundle trains on, plus the report tokenizer and a summary.

:func:`build_datalist` labels unlabelled reports, turns label records into multi-hot vectors, removes
duplicate images, optionally checks that every image loads, and splits by patient (official splits where the
source has them). :func:`heldout_text_overlap` counts held-out items whose report text (normalised) is a
training report's text. :func:`write_dataset` writes ``datalist.json`` (readable by
``monai.data.load_decathlon_datalist``), ``tokenizer.json`` (trained on the training reports) and
``summary.json``. :func:`read_datalist` reads a project datalist back, image paths made absolute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from .errors import DataError, SkipCounter
from .images import read_cxr
from .labels import DEFAULT_CLASSES, UNCERTAIN_POLICIES, check_class_names, to_multi_hot

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("training", "validation", "test")
SPLIT_METHODS: tuple[str, ...] = ("auto", "official", "random")
DATALIST_NAME, TOKENIZER_NAME, SUMMARY_NAME = "datalist.json", "tokenizer.json", "summary.json"
_HEAD_BYTES = 1 << 16


def _file_digest(path: str, limit: int | None = None) -> str:
    """SHA-1 of a file's bytes (its first ``limit`` bytes when given)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        if limit is not None:
            digest.update(f.read(limit))
        else:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def remove_duplicates(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict], Counter]:
    """Drop repeated images, keeping the first: the same path twice, the same (subject, study, image), or
    byte-identical files (compared by size, then a hash of the first 64 KiB, then a full hash, so only
    look-alike files are read in full). Returns the kept records and a count per reason."""
    removed: Counter = Counter()
    kept: list[dict] = []
    seen_paths: set[str] = set()
    seen_keys: set[tuple[str, str, str]] = set()
    for record in records:
        path = os.path.realpath(record["image"])
        key = (str(record.get("subject")), str(record.get("study")), os.path.basename(path))
        if path in seen_paths:
            removed["same image path"] += 1
            continue
        if key in seen_keys:
            removed["same subject, study and image"] += 1
            continue
        seen_paths.add(path)
        seen_keys.add(key)
        kept.append(dict(record))

    by_size: dict[int, list[int]] = defaultdict(list)
    for i, record in enumerate(kept):
        try:
            by_size[os.path.getsize(record["image"])].append(i)
        except OSError:
            continue  # missing files are reported by image verification
    drop: set[int] = set()
    for group in by_size.values():
        if len(group) < 2:
            continue
        by_head: dict[str, list[int]] = defaultdict(list)
        for i in group:
            by_head[_file_digest(kept[i]["image"], _HEAD_BYTES)].append(i)
        for same_head in by_head.values():
            if len(same_head) < 2:
                continue
            first_of: dict[str, int] = {}
            for i in same_head:
                digest = _file_digest(kept[i]["image"])
                if digest in first_of:
                    drop.add(i)
                else:
                    first_of[digest] = i
    removed["byte-identical image"] += len(drop)
    return [r for i, r in enumerate(kept) if i not in drop], +removed


def verify_image(path: str) -> None:
    """Read an image the way training will (:func:`bundle.data.images.read_cxr`); raise DataError if bad."""
    try:
        read_cxr(path)
    except DataError:
        raise
    except Exception as err:  # any reader failure is bad input named by its file
        raise DataError(path, f"unreadable image: {type(err).__name__}: {err}") from err


def check_images(records: list[dict], skip: SkipCounter, num_workers: int = 2) -> list[dict]:
    """Records whose image loads; the others raise or are counted in ``skip`` (threads overlap file I/O)."""

    def check(record: dict) -> DataError | None:
        try:
            verify_image(record["image"])
        except DataError as err:
            return err
        return None

    if num_workers > 1 and len(records) > 1:
        with ThreadPoolExecutor(num_workers) as pool:
            errors = list(pool.map(check, records))
    else:
        errors = [check(r) for r in records]
    kept = []
    for record, error in zip(records, errors):
        if error is None:
            kept.append(record)
        else:
            skip.handle(error)
    return kept


def subject_fraction(subject: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, subject) alone: the subject's place in the random split."""
    digest = hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()
    return int(digest[:15], 16) / float(16**15)


def split_subjects(subjects: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Seeded patient-level split: subject -> ``training`` / ``validation`` / ``test``.

    Each subject's split depends only on (seed, subject) (a hash compared with the fractions), so adding data
    never moves an existing patient to another split. When that leaves a split empty although it was asked
    for, the training subject nearest to it is moved there (tiny datasets).
    """
    if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
    place = {s: subject_fraction(s, seed) for s in sorted(set(subjects))}
    assignment = {
        s: "test" if u < test_fraction else "validation" if u < test_fraction + val_fraction else "training"
        for s, u in place.items()
    }
    for name, fraction in (("test", test_fraction), ("validation", val_fraction)):
        training = sorted((place[s], s) for s, split in assignment.items() if split == "training")
        if fraction > 0 and name not in assignment.values() and len(training) > 1:
            assignment[training[0][1]] = name
    return assignment


def _check_patient_level(splits: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    owner: dict[str, str] = {}
    for name in SPLITS:
        for item in splits[name]:
            other = owner.setdefault(item["subject"], name)
            if other != name:
                raise DataError(
                    None, f"subject {item['subject']!r} is in both {other} and {name}: splits must be patient-level"
                )


def heldout_text_overlap(splits: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
    """Validation / test items whose report equals some training report after
    :func:`bundle.data.reports.normalise_report_text` (case, punctuation and spacing ignored).

    ``splits`` holds ``"training"``, ``"validation"`` and ``"test"`` item lists (a datalist; a missing split
    counts as empty). Returns ``{"validation": n, "test": n, "total": n}``. In real data identical short normal
    reports are legitimate; for the embedded dataset any count above 0 means held-out text leaked.
    """
    from .reports import normalise_report_text

    training = {normalise_report_text(item["report"]) for item in splits.get("training", ())}
    counts = {
        name: sum(normalise_report_text(item["report"]) in training for item in splits.get(name, ()))
        for name in SPLITS[1:]
    }
    return {**counts, "total": sum(counts.values())}


def build_datalist(
    records: Sequence[Mapping[str, Any]],
    class_names: Sequence[str] = DEFAULT_CLASSES,
    uncertain: str = "zeros",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    verify_images: bool = True,
    skip: SkipCounter | None = None,
    source: str = "unknown",
    sections: Sequence[str] = ("findings", "impression"),
    split: str = "auto",
    num_workers: int = 2,
) -> dict:
    """Records (from :mod:`bundle.data.sources`) -> ``{"class_names", "source", "sections", "uncertain",
    "training", "validation", "test", ...}``.

    Items are ``{"image", "report", "labels", "subject", "study"}`` with absolute image paths
    (:func:`write_dataset` makes them relative to the dataset folder). Reports without a label record are
    labelled by :func:`bundle.data.labeler.label_report`. ``split``: ``"official"`` keeps the source's splits,
    ``"random"`` draws a seeded patient-level split by ``val_fraction`` / ``test_fraction``, ``"auto"`` keeps
    official splits when every record has one. No subject ends up in two splits. Extra keys: ``"split"``
    (the method used), ``"seed"``, ``"excluded"`` (removed duplicates and skipped items) and ``"warnings"``
    (e.g. a class no item states).
    """
    skip = skip if skip is not None else SkipCounter(skip_bad=False)
    class_names = check_class_names(list(class_names))
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {uncertain!r} is not one of {UNCERTAIN_POLICIES}")
    if split not in SPLIT_METHODS:
        raise ValueError(f"split {split!r} is not one of {SPLIT_METHODS}")

    kept, duplicates = remove_duplicates(records)
    if verify_images:
        kept = check_images(kept, skip, num_workers)

    labelled: list[dict] = []
    label_report = None
    stated: set[str] = set()
    for record in kept:
        label_record = record.get("label_record")
        if label_record is None:
            if label_report is None:
                from .labeler import label_report
            label_record = label_report(record["report"])
        stated.update(name for name, value in label_record.items() if value is not None)
        labelled.append(
            {
                "image": str(record["image"]),
                "report": record["report"],
                "labels": [float(v) for v in to_multi_hot(label_record, class_names, uncertain)],
                "subject": str(record["subject"]),
                "study": str(record["study"]),
                "_split": record.get("split"),
            }
        )

    has_official = bool(labelled) and all(item["_split"] for item in labelled)
    if split == "official" and not has_official:
        raise DataError(None, "split='official' but some records have no official split; use split='random'")
    method = "official" if split == "official" or (split == "auto" and has_official) else "random"
    if method == "random":
        assignment = split_subjects([i["subject"] for i in labelled], val_fraction, test_fraction, seed)
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for item in labelled:
        official = item.pop("_split")
        splits[official if method == "official" else assignment[item["subject"]]].append(item)
    _check_patient_level(splits)
    warnings = []
    never = [name for name in class_names if name not in stated and name != "No Finding"]
    if labelled and never:
        warnings.append(f"no item states {never}: these classes are negative everywhere")
        logger.warning("%s", warnings[-1])

    return {
        "class_names": class_names,
        "source": source,
        "sections": list(sections),
        "uncertain": uncertain,
        "split": method,
        "seed": seed,
        **splits,
        "excluded": {"duplicates": dict(duplicates), **skip.summary()},
        "warnings": warnings,
    }


def _relative_to(path: str, root: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def label_prevalence(items: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> dict[str, float]:
    """Fraction of items positive for each class."""
    if not items:
        return {name: 0.0 for name in class_names}
    return {
        name: round(sum(1 for item in items if item["labels"][c] == 1.0) / len(items), 4)
        for c, name in enumerate(class_names)
    }


def write_dataset(
    datalist: Mapping[str, Any], out_dir: str | Path, min_count: int = 6, overwrite: bool = False
) -> dict:
    """Write ``datalist.json``, ``tokenizer.json`` (trained on the training reports) and ``summary.json``.

    Image paths inside ``out_dir`` are stored relative to it (MONAI's ``load_decathlon_datalist`` resolves them
    against the datalist's folder), others stay absolute. Refuses to replace an existing ``datalist.json``
    unless ``overwrite``. Returns the summary.
    """
    from .tokenizer import ReportTokenizer

    out_dir = Path(os.path.abspath(out_dir))
    datalist_path = out_dir / DATALIST_NAME
    if datalist_path.exists() and not overwrite:
        raise FileExistsError(f"{datalist_path} already exists; pass overwrite=True (--overwrite) to replace it")
    if not datalist["training"]:
        raise DataError(None, "no items in the training split: nothing to train on (were all items skipped?)")
    out_dir.mkdir(parents=True, exist_ok=True)

    meta = {k: v for k, v in datalist.items() if k not in SPLITS and k not in ("excluded", "warnings")}
    splits = {
        name: [dict(item, image=_relative_to(item["image"], out_dir)) for item in datalist[name]] for name in SPLITS
    }
    datalist_path.write_text(json.dumps({**meta, **splits}, indent=1))

    tokenizer = ReportTokenizer.train([item["report"] for item in datalist["training"]], min_count=min_count)
    tokenizer.save(str(out_dir / TOKENIZER_NAME))

    class_names = list(datalist["class_names"])
    summary = {
        **meta,
        "counts": {name: len(splits[name]) for name in SPLITS},
        "subjects": {name: len({item["subject"] for item in splits[name]}) for name in SPLITS},
        "label_prevalence": {name: label_prevalence(splits[name], class_names) for name in SPLITS},
        "vocab_size": int(tokenizer.vocab_size),
        "min_count": min_count,
        "excluded": datalist.get("excluded", {"duplicates": {}, "skipped": 0, "reasons": {}, "examples": []}),
        "warnings": list(datalist.get("warnings", [])),
        "files": {
            "datalist": str(datalist_path),
            "tokenizer": str(out_dir / TOKENIZER_NAME),
            "summary": str(out_dir / SUMMARY_NAME),
        },
    }
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------------ reading a datalist
_LABEL_VALUES = (0.0, 1.0, -1.0)


@dataclass
class Datalist:
    """A project datalist read from disk: image paths resolved against ``root`` (the file's folder)."""

    path: Path
    root: Path
    class_names: list[str]
    splits: dict[str, list[dict]]

    def items(self, splits: Sequence[str] = SPLITS) -> list[dict]:
        return [item for split in splits for item in self.splits.get(split, [])]


def read_datalist(path: str | PathLike, skip: SkipCounter | None = None) -> Datalist:
    """Read a project datalist (a dataset folder holding ``datalist.json``, or the JSON file itself).

    Image paths are made absolute against the file's folder (as MONAI's ``load_decathlon_datalist`` does). Every
    item needs an ``image`` path and ``labels`` with one 1 / 0 / -1 value per class name; a bad item raises
    :class:`DataError` naming the file, split and item, or is counted and left out when ``skip`` skips bad input.
    """
    skip = skip if skip is not None else SkipCounter()
    path = Path(path)
    file = path / DATALIST_NAME if path.is_dir() else path
    if not file.is_file():
        raise DataError(file, "no datalist (expected a dataset folder with datalist.json, or a datalist .json file)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(file, f"not a readable JSON datalist ({err})") from err
    if not isinstance(data, dict):
        raise DataError(file, f"not a datalist: expected a JSON object, got {type(data).__name__}")
    names = data.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(file, 'missing "class_names" (a list of CheXpert class names)')
    splits: dict[str, list[dict]] = {}
    for split in SPLITS:
        if not isinstance(data.get(split, []), list):
            raise DataError(file, f'"{split}" is not a list of items')
        items = [item for n, item in enumerate(data.get(split, [])) if _item_ok(item, names, file, split, n, skip)]
        splits[split] = [{**item, "image": os.path.abspath(file.parent / item["image"])} for item in items]
    return Datalist(path=file, root=file.parent, class_names=list(names), splits=splits)


def _item_ok(item: Any, names: Sequence[str], file: Path, split: str, n: int, skip: SkipCounter) -> bool:
    """Whether ``item`` has an image path and a label per class; a bad one goes to ``skip`` (raises by default)."""
    problem = None
    if not isinstance(item, dict) or not isinstance(item.get("image"), str):
        problem = "no image path"
    else:
        labels = item.get("labels")
        if not isinstance(labels, list) or len(labels) != len(names):
            problem = f"labels must be a list of {len(names)} values (one per class), got {labels!r}"
        elif any(not isinstance(v, (int, float)) or float(v) not in _LABEL_VALUES for v in labels):
            problem = f"labels must be 1, 0 or -1, got {labels!r}"
    if problem is None:
        return True
    skip.handle(DataError(file, f"bad item: {split} item {n}: {problem}"))
    return False
