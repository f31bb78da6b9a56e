"""Tasks (where examples come from) and the pipeline from records to batches."""
