"""freqbackdoor: the library behind the frequency-backdoor Snakemake workflow.

Reproduces "Rethinking the Backdoor Attacks' Triggers: A Frequency Perspective"
(Zeng, Park, Mao, Jia, ICCV 2021). Every module is importable without Snakemake.
"""

__version__ = "0.1.0"
