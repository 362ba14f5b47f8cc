"""Recipe-side library code of the three video recipes (``recipes/videobert``,
``recipes/videoofa``, ``recipes/videollama``): model builders named by the YAMLs'
``_component_`` paths, the recipes' own datasets (VideoOFA matching / frame order), the
VideoBERT visual vocabulary (hierarchical k-means) and the evaluations that produce the
numbers in ``docs/results.md``.
"""
