"""Turn a dataset source into the bundle's dataset folder: datalist.json, tokenizer.json and summary.json.

Examples::

    python scripts/prepare_data.py --source embedded --out_dir data/embedded --num_items 2000
    python scripts/prepare_data.py --source mimic --data_dir /data/mimic-cxr-jpg/2.1.0 \\
        --reports_dir /data/mimic-cxr/2.0.0 --out_dir data/mimic
    python scripts/prepare_data.py --source iu_xray --data_dir /data/iu_xray --out_dir data/iu --skip_bad
    python scripts/prepare_data.py --source csv --data_dir my_table.csv --out_dir data/mine \\
        --classes "No Finding,Cardiomegaly,Pleural Effusion"

Sources: embedded (the generated default dataset, written in the MIMIC-CXR-JPG layout and read back with the
MIMIC reader), mimic, iu_xray, r2gen, csv (also .jsonl), dicom_dir, nifti_dir.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.errors import DataError
from bundle.data.prepare import embedded_raw, format_summary, prepare_data

__all__ = ["embedded_raw", "format_summary", "main", "prepare_data"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: errors in the input are reported in one line, not a traceback."""
    import fire

    try:
        fire.Fire(prepare_data, command=list(argv) if argv is not None else None, serialize=lambda _: None)
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"prepare_data: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
