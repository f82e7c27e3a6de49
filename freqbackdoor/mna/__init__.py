"""Meta Neural Analysis (Section 5.4) and MNTD's recipe for its shadow and target models."""
