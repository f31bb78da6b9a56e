"""Reading hub datasets without holding them whole, and local data folders checked up front.

Every hub loader of the paper's text tasks goes through :func:`stream_rows`: the dataset is opened with
``streaming=True`` (rows arrive one at a time; a 5M-row split is never materialised), and a hub that cannot be
reached — no network, a wrong id, a gated set without a login — becomes one :class:`DataError` that says so and
names the local alternative. :func:`check_local_files` is the shared ``source: local`` check of the tasks' Params;
:func:`split_file`, :func:`hub_split` and :func:`preflight_local` are the split choices and preflight of the tasks
whose Params name a ``train_file`` / ``test_file`` pair (AQuA-RAT, DialogSum, SAMSum), and the validators of those
Params.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from mtp_bench.data.files import shown_path
from mtp_bench.errors import DataError


def stream_rows(hub_id: str, config: str | None, split: str, local_hint: str) -> Iterator[dict[str, Any]]:
    """Rows of a hub split, streamed. Any failure to open or read it is a DataError ending in ``local_hint``."""
    try:
        import datasets  # imported here: only the hub path needs it, and validation must stay fast
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError(f"the datasets library is needed for hub data ({exc}); {local_hint}") from None
    where = f"{hub_id}" + (f" ({config})" if config else "") + f", split {split!r}"
    try:
        stream = datasets.load_dataset(hub_id, config, split=split, streaming=True)
        yield from stream
    except DataError:
        raise
    except Exception as exc:  # network, missing id, gated repo, bad split: all mean "not reachable from here"
        detail = " ".join(str(exc).split())[:300]
        raise DataError(f"hub dataset {where} could not be read ({type(exc).__name__}: {detail}); {local_hint}") \
            from None


def local_hint(task: str, path_hint: str) -> str:
    """The sentence every hub failure ends with: how to use a local copy instead."""
    return f"without network use a local copy: data.params.source: local with path: {path_hint} (see `{task}` docs)"


def check_local_files(path: str | None, files: list[str], advice: str = "") -> str:
    """``source: local`` checks: a directory is given, exists, and holds each file. Raises ValueError (pydantic turns
    it into a ``data.params.path: ...`` line)."""
    if not path:
        raise ValueError("source is local but no path is given")
    directory = Path(path)
    if not directory.exists():
        raise ValueError(f"data directory {shown_path(path)}")
    if not directory.is_dir():
        raise ValueError(f"data directory {shown_path(path)} is not a directory")
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"data directory {shown_path(path)} lacks {', '.join(missing)}{advice}")
    return path


def count_local(rows: list[dict[str, Any]], where: Path | str) -> int:
    """A task's ``preflight`` step: the rows of one local file were read and checked; none at all is an error."""
    if not rows:
        raise DataError(f"{where}: no examples (the file is empty, or no row passes the task's filter)")
    return len(rows)



def check_split_files(params_cls: type[BaseModel], path: str | None, data: dict[str, Any],
                      dev_file: str | None = None) -> str | None:
    """The ``path`` validator of Params with a ``train_file`` / ``test_file`` pair (and ``validation_file`` when
    ``validation: own``): with ``source: local`` those files must be in ``path`` (a field that failed its own check
    counts as its default). ``dev_file``: a copy that lacks the default training file is told it can train on this
    one instead."""
    if data.get("source") != "local":
        return path
    names = ("train_file", "test_file", *(("validation_file",) if data.get("validation") == "own" else ()))
    defaults = {name: params_cls.model_fields[name].default for name in names}
    files = [data.get(name, default) for name, default in defaults.items()]
    advice = ""
    if dev_file and defaults["train_file"] in files:
        advice = f"; a copy without a training split can train on its dev split: train_file: {dev_file}"
    return check_local_files(path, files, advice)


def check_own_validation(params: SplitFiles) -> None:
    """Params check of ``validation: own``: the validation split must not be the one trained on. Raises ValueError
    (pydantic names the task's params)."""
    if params.validation != "own":
        return
    if params.source == "local" and params.validation_file == params.train_file:
        raise ValueError(f"validation: own reads validation_file {params.validation_file!r}, which is also the "
                         "train_file: train on another file, or carve validation from it (validation: carve)")
    if params.source == "hub" and params.hub_train_split == "validation":
        raise ValueError("validation: own reads the hub's validation split, which is also hub_train_split: train "
                         "on train, or carve validation from it (validation: carve)")


def split_files_validator(dev_file: str | None = None) -> Any:
    """The ``path`` validator of Params with a ``train_file`` / ``test_file`` pair, for their class body:
    ``_check_local = split_files_validator(...)`` runs :func:`check_split_files` with this ``dev_file``."""

    def check_local(cls: type[BaseModel], path: str | None, info: ValidationInfo) -> str | None:
        return check_split_files(cls, path, info.data, dev_file=dev_file)

    return field_validator("path")(check_local)


def split_file_field(default: str, split: Literal["training", "validation", "test"], note: str = "") -> Any:
    """A Params field naming the local file that plays ``split`` (``source: local``), documented alike in every task
    (``note``: what is particular to this dataset, appended to the description)."""
    when = " under ``validation: own``" if split == "validation" else ""
    return Field(default, description=f"File of ``path`` used as the {split} split{when} (``source: local``){note}.")


class OwnValidationChoice(BaseModel):
    """The settings every task with a ``train_file`` / ``test_file`` pair shares: where its validation split comes
    from and which hub split it trains on, with the check that the two are never the same data. Those tasks' Params
    extend it (a settings base, not plugin behaviour: the two fields, their docs and the check were three copies)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    validation: Literal["carve", "own"] = "carve"
    """Where the validation split comes from: ``carve`` takes ``data.validation_size`` examples from the training
    split (none by default); ``own`` uses the dataset's own validation split (the hub's ``validation`` split or the
    local ``validation_file``), and ``data.validation_size`` must then be 0."""

    hub_train_split: Literal["train", "validation"] = "train"
    """Hub split used for training (``validation: carve`` carves validation from it)."""

    @model_validator(mode="after")
    def _own_validation_is_not_trained_on(self) -> OwnValidationChoice:
        check_own_validation(self)  # type: ignore[arg-type]  # the subclass declares the file and source fields
        return self


class SplitFiles(Protocol):
    """The Params fields of a task read from local train/validation/test files or from hub splits. Each task's
    Params declares the files and source itself, with its own defaults and docs; ``validation`` and
    ``hub_train_split`` come from :class:`OwnValidationChoice`, the ``path`` check from :func:`split_files_validator`."""

    source: Literal["local", "hub"]
    path: str | None
    train_file: str
    test_file: str
    validation: Literal["carve", "own"]
    validation_file: str
    hub_train_split: Literal["train", "validation"]


Split = Literal["train", "validation", "test"]


def split_file(params: SplitFiles, split: Split) -> Path:
    """The local file that plays ``split`` (``source: local``; the Params validator made sure it exists)."""
    assert params.path is not None
    names = {"train": params.train_file, "validation": params.validation_file, "test": params.test_file}
    return Path(params.path) / names[split]


def hub_split(params: SplitFiles, split: Split) -> str:
    """The hub split that plays ``split``: the configured training split, or ``validation`` / ``test``."""
    return params.hub_train_split if split == "train" else split


def preflight_local(params: SplitFiles, records: Callable[[Split], list[dict[str, Any]]]) -> int | None:
    """A task's ``preflight``: the local files read and checked as the trials will (file:line on the first bad row;
    none empty; the validation file too under ``validation: own``), returning the training count; the hub is not
    reached before trials start (None)."""
    if params.source != "local":
        return None
    count_local(records("test"), split_file(params, "test"))
    if params.validation == "own":
        count_local(records("validation"), split_file(params, "validation"))
    return count_local(records("train"), split_file(params, "train"))
