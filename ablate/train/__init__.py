"""Data sources and the training/eval engine (timm optimizers, schedules, mixup, EMA). Import the modules
themselves: `ablate.train.sources` (where the data is, its fingerprint) stays importable without torch."""
