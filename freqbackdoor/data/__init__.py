"""Datasets: raw files fetched and verified, then prepared as uint8 image arrays."""
