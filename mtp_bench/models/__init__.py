"""Models and tokenizers: hub ids, local directories, built-in tiny presets; LoRA wrapping."""
