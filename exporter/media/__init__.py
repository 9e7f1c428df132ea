"""ffmpeg and media files: the runner, probing, command plans, verification, the
shared-encode cache."""
