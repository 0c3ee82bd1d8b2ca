"""Data: IDX reading, built-in data sets, in-memory batches and augmentation."""
