"""The fairness card: evaluations in, ``card.json`` out, rendered as Markdown, HTML and a table.

Build side: :mod:`.evaluation` (one record per model or artifact) and :mod:`.build`
(``build_card``; statistics through scipy). Device side too (numpy, no torch, no fairlearn,
scipy or matplotlib): :mod:`.io`, :mod:`.markdown`, :mod:`.html`, :mod:`.table`, :mod:`.gates`,
:mod:`.bench`. Nothing is imported here, so reading a card never loads the build side.
"""
