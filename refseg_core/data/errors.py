"""The one error type of fetching real data, and the full-disk sentence.

Every failure of ``data fetch`` / ``data verify`` is one :class:`DataError` whose message is one sentence
naming the culprit (the address, the file, the dataset and split, the ref id) and what to do; the CLI
prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator


class DataError(RuntimeError):
    """Fetching or verifying real data failed; the message names the address, file, split or ref."""


class SourceUnreachable(DataError):
    """A source did not answer, or answered with an error; :func:`refseg_core.data.fetch.fetch` adds the
    other sources to try."""


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_sentence(where: str | os.PathLike) -> Iterator[None]:
    """Turn ``OSError(ENOSPC)`` (or a full quota) raised inside the block into one sentence."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise DataError(
                f"disk full while writing under {where} ({exc.filename or exc}); free space there or "
                "choose another --root, then run the same command again (what is complete is kept)"
            ) from exc
        raise


__all__ = ["DataError", "SourceUnreachable", "disk_full_sentence", "is_disk_full"]
