"""Sources: the only code that touches devices and files. Camera and microphone import their device
libraries lazily, so that importing this package needs neither OpenCV devices nor PortAudio."""

from engine.sources.base import MediaClock, Source
from engine.sources.camera import CameraSource
from engine.sources.file_replay import FileReplaySource
from engine.sources.microphone import MicrophoneSource
from engine.sources.push import PushSource

__all__ = ["CameraSource", "FileReplaySource", "MediaClock", "MicrophoneSource", "PushSource", "Source"]
