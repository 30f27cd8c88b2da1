"""Stage 4, aggregate, classify and flag: 5-day period means (:mod:`.periods`), the wide feature
table (:mod:`.features`, other systems' tables in :mod:`.readers`), out-of-fold classification
(:mod:`.classify`), suspicion scores and flags (:mod:`.flags`), evaluation on labelled sets
(:mod:`.evaluation`), the HTML report (:mod:`.report`), and the season run end to end (:mod:`.season`).
"""
