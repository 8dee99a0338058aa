"""Sources: the only code that touches devices and files. Camera and microphone import their device
libraries lazily, so that importing this package needs neither OpenCV devices nor PortAudio."""

from .base import MediaClock, Source
from .camera import CameraSource
from .file_replay import FileReplaySource
from .microphone import MicrophoneSource
from .push import PushSource

__all__ = ["CameraSource", "FileReplaySource", "MediaClock", "MicrophoneSource", "PushSource", "Source"]
