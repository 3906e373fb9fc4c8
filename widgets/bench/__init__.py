"""The Benchmark tab: pick variants, run, and see the figures as a table, charts and side by side."""
