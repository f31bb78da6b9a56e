"""The base of every plugin's settings model (``Params``): pydantic, unknown keys refused, and each field's
docstring kept as its description (``mtp-bench methods`` and the docs show them). Imports no torch: a settings module
is what ``mtp-bench validate`` reads instead of the plugin."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Subclass it and document every field with a docstring under it::

        class SkipParams(Settings):
            weight: float = 0.1
            \"\"\"Weight of the skip-one loss.\"\"\"
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
