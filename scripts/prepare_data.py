"""Turn a dataset source into the bundle's dataset folder: datalist.json, tokenizer.json and summary.json.

Examples::

    python scripts/prepare_data.py --source embedded --out_dir data/embedded --num_items 2000
    python scripts/prepare_data.py --source mimic --data_dir /data/mimic-cxr-jpg/2.1.0 \\
        --reports_dir /data/mimic-cxr/2.0.0 --out_dir data/mimic
    python scripts/prepare_data.py --source iu_xray --data_dir /data/iu_xray --out_dir data/iu --skip_bad
    python scripts/prepare_data.py --source csv --data_dir my_table.csv --out_dir data/mine \\
        --classes "No Finding,Cardiomegaly,Pleural Effusion"

Sources: embedded (the generated default dataset, written in the MIMIC-CXR-JPG layout and read back with the
MIMIC reader), mimic, iu_xray, r2gen, csv (also .jsonl), dicom_dir, nifti_dir. The flags are the fields of
``bundle.data.prepare.DatasetOptions`` and of the source's options class (``--help`` lists them); the work is
``bundle.data.prepare.prepare_data``. Bad input is reported in one line with exit status 2; so is an unknown
flag, before any work.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.errors import DataError
from bundle.data.prepare import SOURCE_OPTIONS, DatasetOptions, prepare_data

__all__ = ["main", "prepare_data", "usage"]


def _flags(cls: type) -> str:
    """``--name=default`` for each field of an options dataclass."""

    def shown(value: object) -> str:
        return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)

    return " ".join(f"--{f.name}={shown(f.default)}" for f in dataclasses.fields(cls))


def usage() -> str:
    """The flags, grouped by the options object they fill."""
    lines = [
        __doc__.strip(),
        "",
        "Flags:",
        "  --source NAME --out_dir DIR [--data_dir PATH] [--overwrite] [--quiet]",
        f"  every source: {_flags(DatasetOptions)}",
    ]
    for cls in dict.fromkeys(SOURCE_OPTIONS.values()):
        names = ", ".join(name for name, c in SOURCE_OPTIONS.items() if c is cls)
        lines.append(f"  {names}: {_flags(cls) or '(none)'}")
    lines.append("Each flag is described in bundle/data/prepare.py and bundle/data/sources/options.py.")
    return "\n".join(lines)


def _command(source="embedded", out_dir=None, data_dir=None, *extra, overwrite=False, quiet=False, **options):
    """``prepare_data`` with a stray positional argument refused before any work (fire would run first)."""
    if extra:
        raise ValueError(f"unexpected argument(s) {' '.join(map(str, extra))}: options are flags, e.g. --seed 1")
    return prepare_data(source, out_dir, data_dir, overwrite=overwrite, quiet=quiet, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: errors in the input are reported in one line, not a traceback."""
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(usage())
        return 0
    try:
        fire.Fire(_command, command=args, serialize=lambda _: None)
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"prepare_data: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
