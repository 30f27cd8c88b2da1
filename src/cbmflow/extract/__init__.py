"""Stage 3, extract: per-parcel signatures of every scene and band (:mod:`.run`) from a pixel
index built once per grid (:mod:`.pixelindex`), written by binary COPY (:mod:`.sink`).
"""
