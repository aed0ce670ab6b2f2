"""The network sizes the training benchmark runs: config overrides and the vocabulary size of each preset.

Plain data, no imports: ``tests/tiny.py`` builds the tests' tiny settings from :data:`TINY_SIZES`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NETWORKS", "PRESETS", "TINY_SIZES"]

#: The networks of one EMIXER training, by their config ids.
NETWORKS = ("generator", "image_discriminator", "report_decoder", "report_discriminator", "joint_discriminator")

#: Tiny sizes on top of the demo config: 32 px, few channels, small text layers, batches of 4; a training step takes
#: a fraction of a second on a CPU (the tests' networks).
TINY_SIZES: dict[str, int] = {
    "image_size": 32,
    "base_channels": 8,
    "attention_resolution": 16,
    "joint_base_channels": 4,
    "label_embed_dim": 16,
    "latent_dim": 40,
    "encoder_features": 32,
    "word_embed_dim": 16,
    "text_hidden": 24,
    "text_mlp_hidden": 16,
    "max_sentences": 4,
    "max_words": 12,
    "batch_size": 4,
}

#: Per preset: ``demo`` (whether ``configs/demo.json`` is merged over the training config), the config overrides and
#: the vocabulary size. The vocabulary is not in the configs (it comes from the tokenizer): about 200 words for the
#: embedded demo data; the paper's is not given, so a MIMIC-CXR sized vocabulary (words seen 6+ times) of 4000 is
#: assumed.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"demo": True, "vocab_size": 64, "overrides": TINY_SIZES},
    "demo": {"demo": True, "vocab_size": 200, "overrides": {}},
    "paper": {"demo": False, "vocab_size": 4000, "overrides": {}},
}
