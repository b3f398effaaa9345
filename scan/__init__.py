"""Scan files, folders or buckets of images: a batch CLI with reports, and the same scoring on Ray Data."""
