"""videovlm: extend an image vision-language model into video.

Library layout (one concern per subpackage):

- ``videovlm.video``   frame-accurate reading, samplers, frame extraction
- ``videovlm.data``    synthetic data set and readers for the community's formats
- ``videovlm.models``  image-VLM core, temporal encoders, VideoBERT / VideoOFA / Video-LLaMA
- ``videovlm.train``   config + instantiate, the DeepSpeed training engine
- ``videovlm.eval``    metrics and evaluation
- ``videovlm.qa``      video question answering (CLI and Python API)
"""

__version__ = "0.1.0"
