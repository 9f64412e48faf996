"""Evaluation: metrics, baseline codecs, `rescodec compare` / `bench` and the
benchmark commands (`python -m rescodec.evaluation.benchmark --help`)."""
