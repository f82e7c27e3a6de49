"""Backdoor triggers: the registry of trigger records, and the optimised, GAN and smooth triggers."""
