from engine.sinks.base import Sink
from engine.sinks.callback import CallbackSink
from engine.sinks.console import PlainSink, RichSink, console_sink, plain_line
from engine.sinks.jsonl import JSONLSink

__all__ = ["CallbackSink", "JSONLSink", "PlainSink", "RichSink", "Sink", "console_sink", "plain_line"]
