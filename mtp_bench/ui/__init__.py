"""The MLflow UI on a suite's store: which store and a free port (:mod:`.server`), serving it until Ctrl-C
(:mod:`.serve`), and links straight to the runs worth comparing (:mod:`.links`)."""
