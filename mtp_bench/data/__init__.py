"""What tasks and the trial share about data: local files read bounded and streamed (:mod:`.files`), hub datasets
(:mod:`.hub`), image codes as words (:mod:`.image_codec`), and the pipeline from records to batches
(:mod:`.pipeline`). The tasks themselves are in :mod:`mtp_bench.tasks`."""
