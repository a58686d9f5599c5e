"""What `qa train reader` and `qa train retriever` share: where a run may write (never over what
qa did not write), the mark its model card carries and how it gives a base model's card, how it
names the hardware it ran on, and how a long run gives freed memory back."""

from __future__ import annotations

import ctypes
import functools
import json
from dataclasses import asdict
from pathlib import Path

from qa.errors import QAError


def card_mark(command: str) -> str:
    """The line that marks a model card written by ``qa train COMMAND``."""
    return f"Trained with `qa train {command}`."


def written_card(folder: str | Path, *commands: str) -> str | None:
    """The model card (``README.md``) in ``folder`` when ``qa train COMMAND`` wrote it, for one of
    ``commands`` (its :func:`card_mark`), else None."""
    try:
        text = (Path(folder) / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text if any(card_mark(command) in text for command in commands) else None


def is_training_output(folder: Path, command: str, checkpoint: str | None = None) -> bool:
    """True for a folder ``qa train COMMAND`` wrote: a model whose card carries its
    :func:`card_mark`, or a checkpoint (``checkpoint``: a glob of its state file under
    ``folder``), or only the hidden leftovers of an interrupted checkpoint."""
    if checkpoint and any(folder.glob(checkpoint)):
        return True
    if written_card(folder, command) is not None:
        return True
    return all(p.name.startswith((".checkpoint", "checkpoint")) for p in folder.iterdir())


def check_output(output: Path, command: str, checkpoint: str) -> None:
    """Raise unless ``qa train COMMAND`` may write to ``output``: new, empty, or its own."""
    if output.is_file():
        raise QAError(f"--output {str(output)!r} is a file: choose a folder")
    if output.is_dir() and any(output.iterdir()) and not is_training_output(output, command, checkpoint):
        raise QAError(
            f"--output {str(output)!r} is not empty and was not written by qa train {command}; its files "
            "(README.md, config.json, ...) would be overwritten: choose a new folder, or pass --overwrite"
        )


def check_work_folder(folder: Path, patterns: tuple[str, ...], command: str) -> None:
    """Raise when ``folder`` (one ``qa train COMMAND`` fills during a run and deletes at its end)
    holds anything its names do not match: that was not written by qa, and would be deleted."""
    import fnmatch

    if not folder.exists():
        return
    foreign = [p.name for p in folder.iterdir() if not any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns)] if folder.is_dir() else [folder.name]
    if foreign:
        raise QAError(
            f"{str(folder)!r} holds {foreign[0]!r}, which qa train {command} did not write, and the run would delete the "
            "folder at its end: move it away or choose another --output"
        )


def hardware(device: str) -> str:
    """The device a run trained on, for its model card: the GPU's name, or the CPU's with its
    threads and whether bf16 autocast ran."""
    import torch

    from qa.device import cpu_name, cpu_prefers_bf16

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads" + (", bf16 autocast" if cpu_prefers_bf16() else "")


def changed_options(config, defaults, skip: tuple[str, ...]) -> list[str]:
    """``--option value`` for each field of the dataclass ``config`` that differs from ``defaults``
    (``--flag`` alone for True), fields in ``skip`` left out: the tail of a run's command line."""
    args: list[str] = []
    for key, value in asdict(config).items():
        if key in skip or value == getattr(defaults, key):
            continue
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def card_footer(hyper: dict, command: str) -> list[str]:
    """The model card's lines that give a run's hyper-parameters and the command that ran it."""
    return [f"- Hyper-parameters: `{json.dumps(hyper)}`", "", "Command:", "", "```bash", command, "```", ""]


def card_section(heading: str, card: str) -> list[str]:
    """A model card's lines under ``heading`` (its title replaced, its headings one level down, to
    Markdown's deepest, level 6, where a long chain of runs would go deeper), for the card of a model
    made from it. Lines in code blocks are left as they are."""
    demoted, in_code = [], False
    for line in card.strip().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading_marks = len(line) - len(line.lstrip("#"))
        if heading_marks and not in_code and line[heading_marks:heading_marks + 1] in (" ", ""):
            line = "#" * min(heading_marks + 1, 6) + line[heading_marks:]
        demoted.append(line)
    body = "\n".join(demoted[1:]).strip("\n").splitlines()
    return [f"## {heading}", "", *body, ""]


def release_freed_memory() -> bool:
    """Give the memory the C allocator holds free back to the system: glibc's ``malloc_trim``.

    A training step frees gigabytes of activations whose shapes change with every batch (length
    buckets); glibc keeps much of what is freed in its heap, fragmented, so a run's resident memory
    grows by gigabytes over hours while most of it is free (docs/READER.md, "Training memory").
    Returns False where there is no glibc (a no-op)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # 1 when memory was released, 0 when there was none to release
    return True


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl; Windows takes no None): nothing to call
        return None
