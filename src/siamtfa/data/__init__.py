"""Datasets, synthetic videos, clip sampling."""
