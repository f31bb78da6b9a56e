"""Analysis of what the store holds: which runs count (``runs``), what metric names mean (``names``), statistics
with the seed as the unit (``stats``), the comparison (``comparison``), its tables (``render``), figures (``plots``)
and files (``outputs``), steps-to-accuracy (``steps``, ``steps_report``) and the reproduction check (``reproduce``).
Reads the store through :mod:`mtp_bench.tracking.store`; never imports mlflow itself."""
