"""The main job on the embedded dataset: prepare it, train the demo EMIXER, generate paired samples."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bundle.data.datalist import DATALIST_NAME
from bundle.workflows.configs import DEMO_INFER_CONFIGS, DEMO_TRAIN_CONFIGS, run_workflow

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ the demo
def run_demo(
    num_items: int = 2000,
    dataset_dir: str = "data/embedded",
    output_dir: str = "output",
    seed: int = 0,
    train: bool = True,
    samples_per_class: int = 4,
    **overrides: Any,
) -> dict:
    """Prepare the embedded dataset (unless it is there), then train the demo EMIXER and generate samples.

    1. ``<dataset_dir>``: the embedded dataset (raw data, datalist, tokenizer, summary), reused when it is there,
       never overwritten; ``<output_dir>/embedded_preview.png``: one real example per finding with its report.
    2. Trains with :data:`DEMO_TRAIN_CONFIGS` into ``<output_dir>/demo`` (resumed from its newest checkpoint).
    3. Generates ``samples_per_class`` paired samples per finding with :data:`DEMO_INFER_CONFIGS` into
       ``<output_dir>/demo/generated`` and a sheet of one sample per finding, ``<output_dir>/demo/generated_preview.png``.

    ``overrides`` set ids of the configs of steps 2 and 3. Returns the dataset summary, with ``generated`` (the
    writer's summary) after step 3.
    """
    from bundle.data.prepare import format_summary, prepare_data
    from bundle.data.preview import preview_sheet

    dataset = Path(dataset_dir)
    if (dataset / DATALIST_NAME).is_file():
        summary = json.loads((dataset / "summary.json").read_text())
        print(f"using the embedded dataset already in {dataset} (delete it to regenerate)")
        print(format_summary(summary))
    else:
        summary = prepare_data(source="embedded", out_dir=str(dataset), num_items=num_items, seed=seed)
    sheet = preview_sheet(dataset, Path(output_dir) / "embedded_preview.png")
    print(f"preview of one study per finding: {sheet}")
    print(f"datalist for training: {dataset / DATALIST_NAME} (tokenizer: {dataset / 'tokenizer.json'})")
    if not train:
        return summary

    run_dir = Path(output_dir) / "demo"
    common = {"dataset_dir": str(dataset), "output_dir": str(run_dir), "seed": seed, **overrides}
    print(f"training the demo EMIXER into {run_dir} (TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'})")
    run_workflow(DEMO_TRAIN_CONFIGS, "train", **common)

    generated = run_dir / "generated"
    inference = {"labels": "per_class", "num_samples": samples_per_class, "overwrite": True, **common}
    flow = run_workflow(DEMO_INFER_CONFIGS, "infer", generated_dir=str(generated), **inference)
    written = flow.parser.get_parsed_content("saver").summary
    sheet = preview_sheet(generated, run_dir / "generated_preview.png")
    print(f"generated {written['num_samples']} paired samples: {generated} (open index.html in a browser)")
    print(f"one generated sample per finding, with its report: {sheet}")
    return {**summary, "generated": written}
