"""The fairness card: evaluations in, ``card.json`` out, rendered as Markdown, HTML and a table.

Build side: :mod:`.evaluation` (one record per model or artifact) and :mod:`.build`
(:func:`build_card`). Device side too (no torch): :mod:`.io`, :mod:`.markdown`, :mod:`.html`,
:mod:`.table`, :mod:`.gates`, :mod:`.bench`.
"""

from edgekd.card.build import CARD_SCHEMA, build_card, class_change, seed_significance
from edgekd.card.evaluation import Evaluation, evaluate
from edgekd.card.io import CARD_JSON, load_card
from edgekd.card.markdown import render_markdown
from edgekd.card.table import format_table, summary_rows

__all__ = ["CARD_JSON", "CARD_SCHEMA", "Evaluation", "build_card", "class_change", "evaluate",
           "format_table", "load_card", "render_markdown", "seed_significance", "summary_rows"]
