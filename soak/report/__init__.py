"""Reading results back: reports, charts and comparisons of runs."""
