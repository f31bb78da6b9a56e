"""The method toolkit: everything a training objective (a method plugin) builds on, and nothing else.

- :mod:`.batches`  — the batch and loss types a method exchanges with the shared loop, ``IGNORE_INDEX``.
- :mod:`.protocol` — the :class:`~.protocol.Method` Protocol and the optional ones (saving extras, drafting).
- :mod:`.targets`  — targets k steps ahead, their counts, summed losses and accuracies.
- :mod:`.masks`    — attention patterns (causal, bidirectional prompt, sliding windows) in the kernels' forms.
- :mod:`.anatomy`  — the parts of a Hugging Face causal LM, found without copying its code (model surgery).
- :mod:`.decoding` — KV-cached forwards for self-speculative drafters.
- :mod:`.heads`    — what the heads methods share: saving and reloading extra modules, horizon targets, drafters.

Out-of-tree plugins import the same names from :mod:`mtp_bench.api`, the stable facade over this package.
"""
