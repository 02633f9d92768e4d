"""Things the user should know that happen deep inside long work and do not stop it (a generate call that ran out
of memory and went on with half the rows), without threading a callback through every layer.

Like compose's weights, the receiver travels in a ContextVar: the app shows notices on the page of the session
that started the work (`with notices_to(st.warning): ...`), the CLI prints them on stderr; with no receiver set
they are Python warnings (`Notice`), which Python prints on stderr once per message.

This module imports nothing of mva_core: every layer may notify.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

Receiver = Callable[[str], None]

_RECEIVER: ContextVar[Receiver | None] = ContextVar("mva_notice_receiver", default=None)


class Notice(UserWarning):
    """Work went on in a changed way the user should know about (it did not fail)."""


def notify(message: str) -> None:
    """Tell the user `message` (one line) through the receiver of the current context, else as a `Notice` warning."""
    receiver = _RECEIVER.get()
    if receiver is None:
        warnings.warn(message, Notice, stacklevel=2)
    else:
        receiver(message)


@contextmanager
def notices_to(receiver: Receiver) -> Iterator[None]:
    """Send the notices of work done inside this block (in this thread / task) to `receiver`."""
    token = _RECEIVER.set(receiver)
    try:
        yield
    finally:
        _RECEIVER.reset(token)
