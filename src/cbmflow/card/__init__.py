"""Stage 2, make CARD: claim a catalogue scene and run its engine (:mod:`.jobs`): S1 CARD-BS with
SNAP graphs (:mod:`.graphs`, :mod:`.snap`) or sarsen (:mod:`.backscatter`), CARD-COH6 pairs
(:mod:`.pairing`), S2 CARD-2A with Sen2Cor (:mod:`.sen2cor`) and harmonised L2A (:mod:`.optical`).
"""
