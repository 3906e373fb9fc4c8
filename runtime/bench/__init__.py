"""Benchmarks of GGUF variants: speed (a child process per model), quality (perplexity, KL
divergence against a reference), the machine they ran on, chart figures and export. Qt-free."""
