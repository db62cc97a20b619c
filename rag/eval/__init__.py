"""Evaluation: data set converters (`convert`), metrics (`metrics`) and the runner."""
