"""Errors a user can act on. Each carries a one-line cause; callers add the title/platform."""


class ExportError(Exception):
    """Base class: str(error) is the one line shown to the user."""


class SpecError(ExportError):
    """A platform YAML is invalid: stops the run before any encode."""


class LibraryError(ExportError):
    """The renders tree cannot be turned into titles (bad directory name, duplicate id)."""


class SourceError(ExportError):
    """One source render (or its metadata.json) cannot be exported: fails that export only."""


class EncodeError(ExportError):
    """ffmpeg failed; `stderr_tail` holds its last lines for the error sidecar.

    `transient` marks failures another attempt may not repeat (killed by a signal, I/O).
    """

    def __init__(self, message, stderr_tail="", transient=False):
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.transient = transient


class ConformanceError(ExportError):
    """The encoded file does not meet its platform spec; it is deleted, never kept."""


class RateOvershoot(ConformanceError):
    """The encode's average video bitrate landed over what the spec allows: an encode
    aiming lower can fix it (`bitrate` is what was measured)."""

    def __init__(self, message, bitrate):
        super().__init__(message)
        self.bitrate = bitrate


class SourceChanged(SourceError):
    """A title's input file changed while its export was made: what was made may be of the
    old bytes, so it is made again from the new ones (not kept, not recorded as current)."""


class CacheChanged(EncodeError):
    """A shared encode's bytes are not its record's (written in place under the tool): the
    entry is removed, and another attempt makes it anew."""

    def __init__(self, message):
        super().__init__(message, transient=True)


class DamagedOutput(EncodeError):
    """The output's video holds other packets than x264 wrote (or, a remux, than its
    source's), other frames than the plan's, or does not decode: damaged after its encode,
    or the encoder failed.
    It is not kept; another attempt encodes it again."""

    def __init__(self, message):
        super().__init__(message, transient=True)


class QualityBelowFloor(ConformanceError):
    """The output scored under the platform's `quality:` floors against its source."""
