"""The paper's spelling of trigger names, for tables and figures (``trojan_wm`` -> ``Troj-WM``).

A module of its own, without torch or matplotlib, so that tables (transfer, high-frequency),
figures and reports share one spelling.
"""

from __future__ import annotations

#: Trigger (and ``clean``) names as the paper's tables and figures print them.
LABELS = {
    "clean": "Clean",
    "badnets": "BadNets",
    "blend": "Blend",
    "trojan_sq": "Troj-SQ",
    "trojan_wm": "Troj-WM",
    "nature": "Nature",
    "l2_inv": "l2 inv",
    "l0_inv": "l0 inv",
    "gan_tri": "GAN-Tri",
    "smooth": "Smooth",
}


def display_name(name: str) -> str:
    """The paper's spelling of a trigger name (``trojan_wm`` -> ``Troj-WM``)."""
    return LABELS.get(name, name)
