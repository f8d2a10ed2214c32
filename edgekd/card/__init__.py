"""The fairness card: assembled from evaluations, rendered as Markdown, summarised as a table."""

from edgekd.card.build import CARD_SCHEMA, build_card, class_change, seed_significance
from edgekd.card.markdown import render_markdown
from edgekd.card.table import format_table, summary_rows

__all__ = ["CARD_SCHEMA", "build_card", "class_change", "seed_significance", "render_markdown",
           "format_table", "summary_rows"]
