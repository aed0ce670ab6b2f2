"""Tiny settings shared by the tests: configs that train in seconds on a CPU, and a small embedded dataset."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
TRAIN_CONFIGS = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "demo.json")]
# Tiny on top of the demo: 32 px, few channels, small text layers, batches of 4, 2 iterations per epoch.
TINY = {
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
    "num_workers": 0,
    "max_epochs": 1,
    "epoch_length": 2,
    "save_interval": 1,
    "sample_interval": 2,
    "log_interval": 1,
    "num_threads": 1,
}


def make_tiny_dataset(out_dir: Path, num_items: int = 24) -> Path:
    """Prepare ``num_items`` embedded studies into ``out_dir`` (no torchxrayvision data needed) and return it."""
    from scripts.prepare_data import prepare_data

    prepare_data(
        source="embedded",
        out_dir=str(out_dir),
        num_items=num_items,
        report_source="grammar",
        use_real_masks=False,
        image_size=64,
    )
    return out_dir
