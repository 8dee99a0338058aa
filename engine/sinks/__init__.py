from .base import Sink
from .callback import CallbackSink
from .console import PlainSink, RichSink, console_sink, plain_line
from .jsonl import JSONLSink

__all__ = ["CallbackSink", "JSONLSink", "PlainSink", "RichSink", "Sink", "console_sink", "plain_line"]
