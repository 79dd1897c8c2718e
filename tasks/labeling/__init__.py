"""CheXpert labels for report text: the 14 conditions (:mod:`.conditions`), CheXbert
(:mod:`.chexbert`), the offline rule labeler (:mod:`.rules`, phrase files in ``phrases/``), the
per-text label cache (:mod:`.cache`), agreement metrics (:mod:`.metrics`), real reports with a
reference (:mod:`.openi`, the IU X-ray index terms) and the label stage (:mod:`.stage`). Every labeler follows :class:`.interface.Labeler`."""
