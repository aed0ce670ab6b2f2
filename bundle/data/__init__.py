"""Data layer: report parsing and labelling, tokenizer, dataset sources and the embedded default dataset."""
