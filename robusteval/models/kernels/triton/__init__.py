"""Triton kernels of the fused cross selective scan, one kernel per file (imported only when the
``triton`` backend launches one; nothing here is imported by a plain ``import robusteval``).

* ``cross_scan_rows.py`` — forward, row by row over a (channels, W) tile (large images);
* ``cross_scan_img.py``  — forward, the whole image in one (channels, pixels) tile (H W <= 1024);
* ``cross_scan_bwd.py``  — the chunked reference forward (any float dtype, float64 included) and
  the fused backward (gradients for x, the projections, dt weights and bias, A_logs and Ds);
* ``common.py``          — helpers shared by them.
"""
