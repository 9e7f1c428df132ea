"""reelexport: an incremental doit build of platform-ready exports from finished renders."""

import os

__version__ = "0.1.0"

# NumPy's OpenBLAS starts a thread per core at import, and they spin after each matrix
# product: ~0.15 s of CPU per process for the colour check's small products, in every doit
# worker. The parallelism is doit's workers and ffmpeg's threads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Bump when a code change alters the bytes an encode produces: it is part of every
# export's up-to-date check, so bumping it redoes every export exactly once.
ENCODER_VERSION = 4   # 4: SDR BT.709 tagged, HDR tone-mapped; 3: no edit lists, keyframes on a fixed grid, loudness of the downmix
                      # 2: the VBV buffer is sized to the clip (plan.clip_bufsize)
