"""Region proposals: selective search (Uijlings et al. 2013).

Usage::

    from cvtool.proposals import selective_search
    result = selective_search(image_bgr, mode="fast", seed=0)
    result.boxes          # (N, 4) float64 xyxy, in rank order
"""

from cvtool.proposals.selective_search import (MAX_PIXELS, MODES, ProposalResult, Strategy,
                                               mode_strategies, selective_search)

__all__ = ["MAX_PIXELS", "MODES", "ProposalResult", "Strategy", "mode_strategies", "selective_search"]
