"""
Capture twisted.logger events during a test, as text.
"""

from contextlib import contextmanager

from twisted.logger import formatEvent, globalLogPublisher


@contextmanager
def capturedText():
    """
    Yield a list that fills with every event's formatted text plus the repr
    of all its fields (so nothing hides in an unformatted field).
    """
    lines = []

    def observer(event):
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        lines.append(text + "\n" + repr({k: v for k, v in event.items() if k != "log_logger"}))

    globalLogPublisher.addObserver(observer)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observer)
