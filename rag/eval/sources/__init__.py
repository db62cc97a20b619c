"""Readers of public QA data sets, one module per source format; `rag.eval.convert` writes what they read."""
