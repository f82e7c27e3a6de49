"""The frequency domain: the 2D DCT, mean spectra and the high-frequency energy ratio."""
