"""The paper's artifacts from a run's results: tables, figures, the claims and the comparison report."""
