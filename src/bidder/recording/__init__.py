"""The traffic recorder: a sampled capture of bid requests and the answers they got.

`record.py` is the record format, `redaction.py` takes user identifiers out of bodies,
`files.py` names and writes the gzip JSON Lines files, `writer.py` is the queue and the
thread that fills them, `upload.py` sends closed files to S3, and `recorder.py` puts them
together. The files are read back by `bidder.traffic.recordings` (`bidder replay`).
"""

from bidder.recording.record import Capture, Verdict
from bidder.recording.recorder import Recorder, Sampler, create_recorder

__all__ = ["Capture", "Recorder", "Sampler", "Verdict", "create_recorder"]
