"""The ingest stage: loaders for MIMIC-CXR (:mod:`.mimic_cxr`, sections by :mod:`.sections`),
MIMIC-NLE (:mod:`.mimic_nle`) and Rad-ReStruct (:mod:`.rad_restruct`) in their released layouts,
run by :mod:`.ingest`; :mod:`.demo` writes the synthetic demo corpus in the same layouts.
:mod:`.pull` fetches the sources (PhysioNet layout and settings in :mod:`.physionet`, downloads in
:mod:`.physionet_http`, checksums in :mod:`.checksums`, MIMIC-NLE in :mod:`.nle_reconstruct`,
Rad-ReStruct through :mod:`.archives`)."""
