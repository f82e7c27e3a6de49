"""Backdoor-data detection: the Section-4 detector, its training manipulations, transfer,
the Section-5.4 upgrade, the detectors of Tables 5-7 and screening of users' images.

:func:`to_domain` is named here because checkpoint sidecars cite it as
``freqbackdoor.detection.to_domain`` (the input convention of every detector).
"""

from .detector import to_domain

__all__ = ["to_domain"]
