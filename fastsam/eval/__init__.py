"""Zero-shot evaluation: the FastSAM paper's benchmarks, one command each (``fastsam bench TASK``).

- :mod:`fastsam.eval.coco`: COCOeval wrapper (:func:`evaluate_coco`) and COCO results from a segmentation.
- :mod:`fastsam.eval.proposals`: class-agnostic object proposals, AR@10/100/1000 (box and mask).
- :mod:`fastsam.eval.boxes`: box-prompted instance segmentation, COCO mask AP and mean IoU.
- :mod:`fastsam.eval.clicks`: simulated-click interactive segmentation, mIoU@k and NoC@85/90.
- :mod:`fastsam.eval.edges` (with :mod:`~fastsam.eval.bsds`, :mod:`~fastsam.eval.edge_maps`): BSDS500 edges.
- :mod:`fastsam.eval.report`: measured numbers beside the published ones, as markdown.
- :mod:`fastsam.eval.store`, :mod:`fastsam.eval.datasets`: the resumable per-image cache and the set readers;
  :mod:`fastsam.eval.matching`: greedy mask matching for parity checks.
"""
