"""Annotating raw text with a trained run, in-process or as a Spark job."""
