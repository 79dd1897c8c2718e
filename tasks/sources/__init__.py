"""The ingest stage: loaders for MIMIC-CXR (:mod:`.mimic_cxr`, sections by :mod:`.sections`),
MIMIC-NLE (:mod:`.mimic_nle`) and Rad-ReStruct (:mod:`.rad_restruct`) in their released layouts,
run by :mod:`.ingest`; :mod:`.demo` writes the synthetic demo corpus in the same layouts."""
