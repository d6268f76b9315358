"""Video and streams: every instance tracked with a persistent id, prompted objects followed.

    from fastsam.video import VideoPredictor, track_video
    video = VideoPredictor.from_model("fastsam-default", imgsz=640)
    state = video.init_state("clip.mp4")
    video.add_prompt(state, frame_index=0, points=[[320, 240]], per_point=True)
    for frame in video.propagate(state): ...

    track_video("clip.mp4", "out/", "fastsam-default", imgsz=640, overlay=True)   # what `fastsam track` runs

See :mod:`fastsam.video.tracker` for the association, :mod:`fastsam.video.writer` for the output format.
"""

from fastsam.video.predictor import ObjectMask, VideoFrame, VideoPredictor, VideoState
from fastsam.video.run import TrackSummary, track_video
from fastsam.video.sources import Frame, FrameSource, StreamDroppedError, VideoReadError
from fastsam.video.tracker import InstanceTracker, TrackerConfig

__all__ = ["VideoPredictor", "VideoState", "VideoFrame", "ObjectMask", "track_video", "TrackSummary", "FrameSource",
           "Frame", "VideoReadError", "StreamDroppedError", "InstanceTracker", "TrackerConfig"]
