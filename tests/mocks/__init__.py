"""Stand-ins for hardware at the library boundary: OpenCV's VideoCapture and the sounddevice module."""
